// Launcher of the small-batch GEMM: one instantiation per row count 1..8; batch 1 picks its
// columns per block from the wave fill of the two shapes it has (or a benchmark's
// set_gemv_variant).
#include "cuda/gemv.cuh"
#include "cuda/kernels.hpp"

namespace kvserve::cuda {
namespace {

int g_variant = 0;

template <int M, int NR = kGemvRowsPerBlock<M>, int D = kGemvDepth>
cudaError_t launch(const bf16* x, const bf16* w, int n, int k, float* y, cudaStream_t stream) {
  return launch_pdl(gemv_kernel<M, NR, D>, dim3((n + NR - 1) / NR), dim3(kGemvWarps * 32), 0,
                    stream, x, w, n, k, y);
}

/// Resident blocks of a GEMV instantiation on the whole device (occupancy x SMs), cached.
template <int M, int NR, int D>
int device_slots() {
  static const int slots = [] {
    int per_sm = 0, dev = 0, sms = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_kernel<M, NR, D>,
                                                      kGemvWarps * 32, 0) != cudaSuccess ||
        cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return per_sm * sms;
  }();
  return slots;
}

/// Fraction of the last wave's slots that hold a block, as a share of all waves: 1 when the
/// blocks fill whole waves. A memory-bound kernel whose last wave is mostly empty leaves
/// bandwidth unused at its end (seen on the H100 for n = 4096 with 4 columns per block: 1,024
/// blocks on 792 slots, 1.29 waves, 12-14% slower than 8 columns: 512 blocks on 528 slots).
double wave_fill(int blocks, int slots) {
  if (slots <= 0) return 1.0;
  const int waves = (blocks + slots - 1) / slots;
  return static_cast<double>(blocks) / (static_cast<double>(waves) * slots);
}

cudaError_t launch_m1(const bf16* x, const bf16* w, int n, int k, float* y, cudaStream_t stream) {
  switch (g_variant) {
    case 1:
      return launch<1, 4, 4>(x, w, n, k, y, stream);
    case 2:
      return launch<1, 8, 2>(x, w, n, k, y, stream);
    case 3:
      return launch<1, 2, 4>(x, w, n, k, y, stream);
    case 4:
      return launch<1, 4, 2>(x, w, n, k, y, stream);
    default:
      break;
  }
  // 4 or 8 columns per block, whichever fills its waves better (4 on a tie).
  const double fill4 = wave_fill((n + 3) / 4, device_slots<1, 4, 2>());
  const double fill8 = wave_fill((n + 7) / 8, device_slots<1, 8, 2>());
  if (fill8 > fill4) return launch<1, 8, 2>(x, w, n, k, y, stream);
  return launch<1, 4, 2>(x, w, n, k, y, stream);
}
}  // namespace

void set_gemv_variant(int variant) { g_variant = variant; }

cudaError_t launch_gemv(const bf16* x, const bf16* w, int m, int n, int k, float* y,
                        cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;
  if (k % 8 != 0) return cudaErrorInvalidValue;
  switch (m) {
    case 1:
      return launch_m1(x, w, n, k, y, stream);
    case 2:
      return launch<2>(x, w, n, k, y, stream);
    case 3:
      return launch<3>(x, w, n, k, y, stream);
    case 4:
      return launch<4>(x, w, n, k, y, stream);
    case 5:
      return launch<5>(x, w, n, k, y, stream);
    case 6:
      return launch<6>(x, w, n, k, y, stream);
    case 7:
      return launch<7>(x, w, n, k, y, stream);
    case 8:
      return launch<8>(x, w, n, k, y, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace kvserve::cuda
