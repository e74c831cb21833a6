// Blocked GEMM with weights in any stored type, and the convolution kernels built on it (CPU backend internals).
//
//   C[M, N] = A[M, K] . W[N, K]^T (+ bias[N])
//
// A is f32, row-major (lda). W is a weight matrix of N rows of K elements in its stored type (F32, F16, BF16 or a
// block-quantized type); it is never expanded as a whole: each thread dequantizes the panels it needs into its own
// packed buffer (all of K for a block of columns), then reuses that block for every row of A.
// Results are deterministic: they do not depend on the number of threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdn {
class ThreadPool;

namespace cpu {

struct WeightMatrix {
  DType type = DType::F32;
  const void* data = nullptr;
  size_t row_bytes = 0;  // bytes between rows
  int64_t n = 0, k = 0;  // rows (output features), elements per row
};

// Dequantizes rows [r0, r0+rows) x elements [k0, k0+cols) of `w` into dst (row stride dst_ld).
// k0 and cols must be multiples of the type's block size (cols may also end at k).
void dequantize_weight_rows(const WeightMatrix& w, int64_t r0, int64_t rows, int64_t k0, int64_t cols, float* dst,
                            int64_t dst_ld);

// C = A . W^T (+ bias). A: M rows of K floats, lda apart. C: M rows of N floats, ldc apart.
void gemm_f32_weights(int64_t m, const float* a, int64_t lda, const WeightMatrix& w, const float* bias, float* c,
                      int64_t ldc, ThreadPool& pool);

// Entry points of CpuBackend::linear / conv2d (argument checking included), callable without a Backend object.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* b);
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad);

// Convolution algorithms (inputs already checked; exposed for tests and benchmarks).
enum class ConvAlgo { Auto, Im2col, Winograd };
Tensor conv2d_with(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad, ConvAlgo algo);

}  // namespace cpu
}  // namespace sdn
