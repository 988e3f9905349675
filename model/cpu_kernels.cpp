#include "model/cpu_kernels.hpp"

#include <algorithm>
#include <cmath>

#include "model/thread_pool.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define KVSERVE_X86 1
#endif

namespace kvserve {
namespace {

// ---- portable path: eight scalar lanes, the same shape as the AVX2 path -------------------

inline float hsum_lanes(const float* a) {
  float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
  return (s0 + s2) + (s1 + s3);
}

template <int R, int C>
void tile_portable(const float* x, int ldx, const float* w, int k, float* y, int ldy,
                   bool accumulate) {
  float acc[R][C][8] = {};
  int i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int r = 0; r < R; ++r) {
      const float* wr = w + static_cast<std::size_t>(r) * k + i;
      for (int c = 0; c < C; ++c) {
        const float* xc = x + static_cast<std::size_t>(c) * ldx + i;
        for (int l = 0; l < 8; ++l) acc[r][c][l] += wr[l] * xc[l];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float s = hsum_lanes(acc[r][c]);
      for (int j = i; j < k; ++j) {
        s += w[static_cast<std::size_t>(r) * k + j] * x[static_cast<std::size_t>(c) * ldx + j];
      }
      float& out = y[static_cast<std::size_t>(c) * ldy + r];
      out = accumulate ? out + s : s;
    }
  }
}

#if defined(KVSERVE_X86)
// ---- AVX2 + FMA path ---------------------------------------------------------------------

__attribute__((target("avx2,fma"))) inline float hsum_avx(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);                  // (a0+a4, a1+a5, a2+a6, a3+a7)
  __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));  // (s0+s2, s1+s3, ..)
  __m128 u = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
  return _mm_cvtss_f32(u);
}

template <int R, int C>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, int ldx, const float* w, int k,
                                                   float* y, int ldy, bool accumulate) {
  __m256 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  int i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) xv[c] = _mm256_loadu_ps(x + static_cast<std::size_t>(c) * ldx + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256 wv = _mm256_loadu_ps(w + static_cast<std::size_t>(r) * k + i);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float s = hsum_avx(acc[r][c]);
      for (int j = i; j < k; ++j) {
        s = std::fma(w[static_cast<std::size_t>(r) * k + j],
                     x[static_cast<std::size_t>(c) * ldx + j], s);
      }
      float& out = y[static_cast<std::size_t>(c) * ldy + r];
      out = accumulate ? out + s : s;
    }
  }
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float a, const float* x, int n, float* y) {
  __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}
#endif

bool detect_avx2() {
#if defined(KVSERVE_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const bool kUseAvx2 = detect_avx2();

// Rows per micro-tile and tokens per micro-tile: 4 x 3 accumulators fill 12 of the 16 AVX
// registers, leaving room for the three token vectors and one weight vector.
constexpr int kTileRows = 4;
constexpr int kTileTokens = 3;

using tile_fn = void (*)(const float*, int, const float*, int, float*, int, bool);

template <int R>
tile_fn pick_tile(int tokens) {
#if defined(KVSERVE_X86)
  if (kUseAvx2) {
    switch (tokens) {
      case 1:
        return &tile_avx2<R, 1>;
      case 2:
        return &tile_avx2<R, 2>;
      default:
        return &tile_avx2<R, 3>;
    }
  }
#endif
  switch (tokens) {
    case 1:
      return &tile_portable<R, 1>;
    case 2:
      return &tile_portable<R, 2>;
    default:
      return &tile_portable<R, 3>;
  }
}

tile_fn pick(int rows, int tokens) {
  if (rows == 8 && tokens == 1) {
#if defined(KVSERVE_X86)
    if (kUseAvx2) return &tile_avx2<8, 1>;
#endif
    return &tile_portable<8, 1>;
  }
  switch (rows) {
    case 1:
      return pick_tile<1>(tokens);
    case 2:
      return pick_tile<2>(tokens);
    case 3:
      return pick_tile<3>(tokens);
    default:
      return pick_tile<4>(tokens);
  }
}

// One task: rows [row_begin, row_end) for every token. Token tiles outside, row tiles inside,
// so the task's weight rows stay in cache while the tokens stream past them.
void matmul_rows(const float* x, int num_tokens, int ldx, const float* w, int row_begin,
                 int row_end, int k, float* y, int ldy, bool accumulate) {
  for (int t = 0; t < num_tokens; t += kTileTokens) {
    const int tokens = std::min(kTileTokens, num_tokens - t);
    const float* xt = x + static_cast<std::size_t>(t) * ldx;
    float* yt = y + static_cast<std::size_t>(t) * ldy;
    int r = row_begin;
    if (tokens == 1) {
      // A single token streams its weight rows from memory: more rows in flight per tile.
      for (; r + 8 <= row_end; r += 8) {
        pick(8, 1)(xt, ldx, w + static_cast<std::size_t>(r) * k, k, yt + r, ldy, accumulate);
      }
    }
    for (; r < row_end; r += kTileRows) {
      const int rows = std::min(kTileRows, row_end - r);
      pick(rows, tokens)(xt, ldx, w + static_cast<std::size_t>(r) * k, k, yt + r, ldy, accumulate);
    }
  }
}

}  // namespace

bool cpu_kernels_use_avx2() { return kUseAvx2; }

float dot(const float* a, const float* b, int n) {
  float out = 0.0f;
  pick(1, 1)(a, n, b, n, &out, 1, false);
  return out;
}

void matmul(const float* x, int num_tokens, int ldx, const float* w, int num_rows, int k, float* y,
            int ldy, bool accumulate, thread_pool& pool) {
  if (num_tokens <= 0 || num_rows <= 0) return;
  // About eight tasks per thread for balance, each a multiple of the row tile and small
  // enough that its weight rows stay in L2 while the tokens pass.
  int threads = pool.size();
  int rows_per_task = (num_rows + threads * 8 - 1) / (threads * 8);
  rows_per_task = (rows_per_task + kTileRows - 1) / kTileRows * kTileRows;
  int max_rows =
      std::max(kTileRows, (96 * 1024 / static_cast<int>(sizeof(float)) / std::max(k, 1)) /
                              kTileRows * kTileRows);
  rows_per_task = std::clamp(rows_per_task, kTileRows, max_rows);
  int num_tasks = (num_rows + rows_per_task - 1) / rows_per_task;
  // Below ~64K multiply-adds waking a thread costs more than it saves.
  const bool parallel = static_cast<std::int64_t>(num_tokens) * num_rows * k >= (1 << 16);
  pool.parallel_for(
      num_tasks,
      [&](int task, int) {
        int begin = task * rows_per_task;
        int end = std::min(num_rows, begin + rows_per_task);
        matmul_rows(x, num_tokens, ldx, w, begin, end, k, y, ldy, accumulate);
      },
      parallel);
}

void rms_norm(const float* x, const float* weight, int n, float eps, float* out) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  float variance = static_cast<float>(sum / n);
  float r = 1.0f / std::sqrt(variance + eps);
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * r);
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void axpy(float a, const float* x, int n, float* y) {
#if defined(KVSERVE_X86)
  if (kUseAvx2) {
    axpy_avx2(a, x, n, y);
    return;
  }
#endif
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace kvserve
