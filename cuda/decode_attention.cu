// Launcher of paged decode attention: head dims 64 and 128; query heads per KV head handled
// 1, 2, 4 or 8 at a time (larger groups in chunks of 8); bf16, FP8 E4M3 and INT8 pools.
#include <algorithm>
#include <cstdlib>

#include "cuda/decode_attention.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {

/// 8-bit pools, when the caller leaves it to us: 4 tokens per sub-warp iteration and, for groups
/// of up to 4 query heads per KV head, 16 dimensions per lane (one 16-byte load per token: half
/// the lanes per token, so half the shuffle reductions and per-token softmax work; 254
/// registers, two blocks per SM). Measured on the H100 at 16k-32k context, group 4: 64-68% of
/// the copy bandwidth against 54-58% with 8 dimensions per lane (168 registers, three blocks)
/// and 50-53% with 8 tokens per iteration. Larger groups use 8 dimensions per lane.
constexpr int kTokensPerIter8Bit = 4;
constexpr int kDimsPerLane8Bit = 16;

/// bf16: a 3-deep shared-memory ring of K/V chunks (cp.async) unless the caller asks otherwise
/// (decode_attention_stages picks 2 where that pays).
constexpr int kDefaultStagesBf16 = 3;
/// decode_attention_stages: the shallower ring, and the least share of its one wave's slots its
/// grid must fill.
constexpr int kShallowStagesBf16 = 2;
constexpr double kShallowMinFill = 0.9;

/// Whether the decode kernel asks L2 for its first K/V lines before it waits on the kernel
/// before it (decode_attention.cuh); KVSERVE_ATTN_L2_PREFETCH=0 turns it off (A/B runs). Read
/// once.
bool l2_prefetch_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("KVSERVE_ATTN_L2_PREFETCH");
    return !(e && e[0] == '0');
  }();
  return on;
}

/// Whether the decode kernel interleaves its pieces (decode_attention.cuh);
/// KVSERVE_ATTN_INTERLEAVE=0 turns it off (A/B runs). Read once.
bool interleave_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("KVSERVE_ATTN_INTERLEAVE");
    return !(e && e[0] == '0');
  }();
  return on;
}

/// One instantiation of the decode kernel with its merge kernel: shared memory, occupancy and
/// launch.
template <int HD, int MAXG, kv_storage S, int U, int DPL = 8, int STAGES = 0>
struct variant {
  static constexpr int kNsub = kDecodeWarps * (32 / (HD / DPL));
  static constexpr int kSmem = decode_smem<HD, MAXG, kNsub, STAGES, U>::kBytes;
  static constexpr auto kernel = decode_attention_kernel<HD, MAXG, S, U, DPL, STAGES>;

  /// Raises the kernel's dynamic shared memory limit where it needs more than 48 KB (once; the
  /// backend's first call is decode_attention_splits, outside any graph capture).
  static cudaError_t prepare() {
    static const cudaError_t e =
        kSmem > 48 * 1024
            ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem)
            : cudaSuccess;
    return e;
  }

  static int occupancy() {
    if (prepare() != cudaSuccess) return 1;
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kDecodeWarps * 32, kSmem) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return 1;
    }
    return n > 0 ? n : 1;
  }

  static cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
    if (const cudaError_t e = prepare(); e != cudaSuccess) return e;
    const int group = a.num_heads / a.kv.num_kv_heads;
    const int chunks = (group + MAXG - 1) / MAXG;
    const dim3 grid(a.num_seqs, a.kv.num_kv_heads * chunks, a.num_splits);
    if (const cudaError_t e = launch_pdl(kernel, grid, dim3(kDecodeWarps * 32), kSmem, stream, a,
                                         l2_prefetch_enabled(), interleave_enabled());
        e != cudaSuccess)
      return e;
    return launch_pdl(decode_attention_merge_kernel<HD>, dim3(a.num_seqs, a.num_heads), dim3(HD), 0,
                      stream, a);
  }
};

/// Launches the variant whose query-head chunk (1, 2, 4 or 8) serves the group.
template <int HD, kv_storage S, int U, int DPL, int STAGES>
cudaError_t launch_group(const decode_attention_args& a, cudaStream_t stream) {
  const int group = a.num_heads / a.kv.num_kv_heads;
  if (group <= 1) return variant<HD, 1, S, U, DPL, STAGES>::launch(a, stream);
  if (group <= 2) return variant<HD, 2, S, U, DPL, STAGES>::launch(a, stream);
  if (group <= 4) return variant<HD, 4, S, U, DPL, STAGES>::launch(a, stream);
  // 16 dimensions per lane serves groups of up to 4 (the per-sub-warp merge buffers of 8 heads
  // would not fit); larger groups run with 8.
  if constexpr (DPL == 16) {
    return variant<HD, 8, S, kTokensPerIter8Bit>::launch(a, stream);
  } else {
    return variant<HD, 8, S, U, DPL, STAGES>::launch(a, stream);
  }
}

int stages_bf16(int requested) { return requested > 0 ? requested : kDefaultStagesBf16; }

template <int HD, kv_storage S>
cudaError_t launch_tokens(const decode_attention_args& a, cudaStream_t stream) {
  if constexpr (S == kv_storage::kBf16) {
    switch (stages_bf16(a.kv_stages)) {
      case 1:
        return launch_group<HD, S, kTokensPerIter, 8, 0>(a, stream);
      case 2:
        return launch_group<HD, S, kTokensPerIter, 8, 2>(a, stream);
      case 3:
        return launch_group<HD, S, kTokensPerIter, 8, 3>(a, stream);
      case 4:
        return launch_group<HD, S, kTokensPerIter, 8, 4>(a, stream);
      default:
        return cudaErrorInvalidValue;
    }
  } else {
    const int u = a.tokens_per_iter > 0 ? a.tokens_per_iter : kTokensPerIter8Bit;
    const int dpl = a.dims_per_lane > 0 ? a.dims_per_lane : kDimsPerLane8Bit;
    if (dpl == 8 && u == 4) return launch_group<HD, S, 4, 8, 0>(a, stream);
    if (dpl == 8 && u == 8) return launch_group<HD, S, 8, 8, 0>(a, stream);
    if (dpl == 16 && u == 2) return launch_group<HD, S, 2, 16, 0>(a, stream);
    if (dpl == 16 && u == 4) return launch_group<HD, S, 4, 16, 0>(a, stream);
    return cudaErrorInvalidValue;
  }
}

template <int HD>
cudaError_t launch_dtype(const decode_attention_args& a, cudaStream_t stream) {
  switch (a.kv.dtype) {
    case kv_storage::kBf16:
      return launch_tokens<HD, kv_storage::kBf16>(a, stream);
    case kv_storage::kFp8E4m3:
      return launch_tokens<HD, kv_storage::kFp8E4m3>(a, stream);
    case kv_storage::kInt8:
      return launch_tokens<HD, kv_storage::kInt8>(a, stream);
  }
  return cudaErrorInvalidValue;
}

template <int HD, kv_storage S, int U, int DPL = 8, int STAGES = 0>
int resident_blocks_per_sm(int group) {
  if (group <= 1) return variant<HD, 1, S, U, DPL, STAGES>::occupancy();
  if (group <= 2) return variant<HD, 2, S, U, DPL, STAGES>::occupancy();
  if (group <= 4) return variant<HD, 4, S, U, DPL, STAGES>::occupancy();
  if constexpr (DPL == 16) {
    return variant<HD, 8, S, U>::occupancy();  // 8 dimensions per lane
  } else {
    return variant<HD, 8, S, U, DPL, STAGES>::occupancy();
  }
}

template <int HD>
int resident_blocks_per_sm(int group, kv_storage dtype, int kv_stages) {
  switch (dtype) {
    case kv_storage::kFp8E4m3:
      return resident_blocks_per_sm<HD, kv_storage::kFp8E4m3, kTokensPerIter8Bit, kDimsPerLane8Bit>(
          group);
    case kv_storage::kInt8:
      return resident_blocks_per_sm<HD, kv_storage::kInt8, kTokensPerIter8Bit, kDimsPerLane8Bit>(
          group);
    default:
      switch (stages_bf16(kv_stages)) {
        case 1:
          return resident_blocks_per_sm<HD, kv_storage::kBf16, kTokensPerIter, 8, 0>(group);
        case 2:
          return resident_blocks_per_sm<HD, kv_storage::kBf16, kTokensPerIter, 8, 2>(group);
        case 4:
          return resident_blocks_per_sm<HD, kv_storage::kBf16, kTokensPerIter, 8, 4>(group);
        default:
          return resident_blocks_per_sm<HD, kv_storage::kBf16, kTokensPerIter, 8, 3>(group);
      }
  }
}

}  // namespace

int decode_attention_blocks_per_seq(int num_heads, int num_kv_heads) {
  const int group = num_heads / num_kv_heads;
  const int maxg = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
  return num_kv_heads * ((group + maxg - 1) / maxg);
}

namespace {

/// The kernel's resident blocks times `num_sms`: one wave.
int wave_capacity(int num_heads, int num_kv_heads, int head_dim, int num_sms, kv_storage dtype,
                  int kv_stages) {
  const int group = num_heads / num_kv_heads;
  const int per_sm = head_dim == 64 ? resident_blocks_per_sm<64>(group, dtype, kv_stages)
                                    : resident_blocks_per_sm<128>(group, dtype, kv_stages);
  return per_sm * num_sms;
}

}  // namespace

int decode_attention_splits(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms, kv_storage dtype, int kv_stages) {
  const int capacity = wave_capacity(num_heads, num_kv_heads, head_dim, num_sms, dtype, kv_stages);
  const int base = std::max(1, num_seqs * decode_attention_blocks_per_seq(num_heads, num_kv_heads));
  // Time ~ waves(s) / s for s splits (each block does 1/s of a sequence's context). Take the
  // fewest splits within 5% of the best ratio: fewer splits mean less merging.
  auto cost = [&](int splits) {
    const int blocks = base * splits;
    return static_cast<double>((blocks + capacity - 1) / capacity) / splits;
  };
  double best = cost(1);
  for (int splits = 2; splits <= kMaxDecodeSplits; ++splits) best = std::min(best, cost(splits));
  for (int splits = 1; splits <= kMaxDecodeSplits; ++splits)
    if (cost(splits) <= best * 1.05) return splits;
  return 1;
}

int decode_attention_stages(int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                            int num_sms, kv_storage dtype) {
  if (dtype != kv_storage::kBf16) return 0;
  const int splits = decode_attention_splits(num_seqs, num_heads, num_kv_heads, head_dim, num_sms,
                                             dtype, kShallowStagesBf16);
  const int blocks =
      std::max(1, num_seqs * decode_attention_blocks_per_seq(num_heads, num_kv_heads)) * splits;
  const int capacity =
      wave_capacity(num_heads, num_kv_heads, head_dim, num_sms, dtype, kShallowStagesBf16);
  return blocks <= capacity && blocks >= kShallowMinFill * capacity ? kShallowStagesBf16
                                                                    : kDefaultStagesBf16;
}

decode_attention_plan plan_decode_attention(int num_seqs, int num_heads, int num_kv_heads,
                                            int head_dim, int num_sms, kv_storage dtype) {
  decode_attention_plan p;
  p.kv_stages =
      decode_attention_stages(num_seqs, num_heads, num_kv_heads, head_dim, num_sms, dtype);
  p.num_splits = decode_attention_splits(num_seqs, num_heads, num_kv_heads, head_dim, num_sms,
                                         dtype, p.kv_stages);
  return p;
}

cudaError_t launch_decode_attention(const decode_attention_args& a, cudaStream_t stream) {
  if (a.num_seqs == 0) return cudaSuccess;
  if (a.num_splits < 1 || a.num_splits > kMaxDecodeSplits) return cudaErrorInvalidValue;
  if (a.kv.dtype != kv_storage::kBf16 && (!a.kv.k_scale || !a.kv.v_scale))
    return cudaErrorInvalidValue;
  switch (a.kv.head_dim) {
    case 64:
      return launch_dtype<64>(a, stream);
    case 128:
      return launch_dtype<128>(a, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
