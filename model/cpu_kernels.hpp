#pragma once
/// fp32 kernels of the CPU reference backend. Every reduction has one fixed order that depends
/// only on its length (never on how many rows or tokens are processed together), so a token's
/// results are bit-identical whatever batch it is computed in. AVX2+FMA is used when the CPU
/// has it (checked once at run time); the portable path has the same structure.

#include <cstddef>
#include <cstdint>

namespace kvserve {

class thread_pool;

/// True when the AVX2+FMA kernels are in use.
bool cpu_kernels_use_avx2();

/// The canonical dot product of `n` floats: eight lane accumulators over full groups of 8,
/// summed in a fixed tree, then the tail in order. matmul uses exactly this order.
float dot(const float* a, const float* b, int n);

/// y[t * ldy + r] (+)= dot(x[t * ldx ...], w[r * k ...], k) for t < num_tokens, r < num_rows:
/// `x` is [num_tokens, k] (row stride ldx), `w` is [num_rows, k] row-major (HF's
/// [out_features, in_features]), `y` is [num_tokens, num_rows] (row stride ldy). With
/// `accumulate`, the product is added to y (residual connections), else it overwrites y.
/// Parallel over output rows; each output element is one canonical dot product.
void matmul(const float* x, int num_tokens, int ldx, const float* w, int num_rows, int k, float* y,
            int ldy, bool accumulate, thread_pool& pool);

/// out[i] = (x[i] * r) * weight[i] with r = 1 / sqrt(mean(x^2) + eps) (HF LlamaRMSNorm).
void rms_norm(const float* x, const float* weight, int n, float eps, float* out);

/// out[i] = silu(gate[i]) * up[i].
void silu_mul(const float* gate, const float* up, int n, float* out);

/// y[i] += a * x[i] for i < n (attention's weighted sum of V rows, one position at a time).
void axpy(float a, const float* x, int n, float* y);

}  // namespace kvserve
