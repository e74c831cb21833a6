// Elementwise, normalisation and softmax kernels of the CPU backend (one copy per ISA; see simd.h).
// Every kernel works on one contiguous run; threading and broadcasting are done by the caller (cpu_ops.cpp).
#pragma once
#include <cstdint>

#include "backends/cpu/simd/simd.h"

namespace sdn {
namespace cpu {
// Unary op codes (same order as sdn::UnaryOp).
enum : int { kUnarySilu = 0, kUnaryGeluErf = 1, kUnaryGeluTanh = 2, kUnaryQuickGelu = 3 };
// Binary op codes.
enum : int { kBinAdd = 0, kBinMul = 1 };
}  // namespace cpu
}  // namespace sdn

// y[i] = op(x[i]); y may equal x.
SDN_DECLARE_ISA(void unary_f32(int op, const float* x, float* y, int64_t n))
// y[i] = a[i] * gelu_erf(g[i])
SDN_DECLARE_ISA(void geglu_f32(const float* a, const float* g, float* y, int64_t n))
// y[i] = a[i] op b[i]; y may equal a.
SDN_DECLARE_ISA(void binary_f32(int op, const float* a, const float* b, float* y, int64_t n))
// y[i] = a[i] op s; y may equal a.
SDN_DECLARE_ISA(void binary_scalar_f32(int op, const float* a, float s, float* y, int64_t n))
// Sum of x (float lanes over short blocks, blocks accumulated in double).
SDN_DECLARE_ISA(double sum_f32(const float* x, int64_t n))
// Sum of (x - mean)^2, same accumulation scheme.
SDN_DECLARE_ISA(double sqdev_f32(const float* x, int64_t n, float mean))
// y = (x - m) * a + b, then SiLU when silu is set; y may equal x.
SDN_DECLARE_ISA(void affine_f32(const float* x, float* y, int64_t n, float m, float a, float b, bool silu))
// y = (x - mean) * rstd * gamma + beta (gamma/beta may be null).
SDN_DECLARE_ISA(void normalize_f32(const float* x, float* y, int64_t n, float mean, float rstd, const float* gamma,
                                   const float* beta))
// Numerically stable softmax of one row; y may equal x.
SDN_DECLARE_ISA(void softmax_row_f32(const float* x, float* y, int64_t n))
// Benchmark baseline: `iters` rounds of 12 independent vector FMA chains (12 * W * 2 FLOP per round, W = lanes of
// the level: 16, 8, or 1 for the plain twin). Returns a value derived from the chains so nothing is optimised away.
SDN_DECLARE_ISA(float fma_probe(int64_t iters, int* lanes))
// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols (8x8 register transposes inside).
SDN_DECLARE_ISA(void transpose_f32(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                                   int64_t cols))
