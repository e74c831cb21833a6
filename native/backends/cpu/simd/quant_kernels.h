// SIMD row kernels for the quantization formats (one compiled copy per ISA, see simd.h). Called through
// core/quant.h (dequantize_row, dot_row, dequantize_rows), which validates (t, n) first.
// Each returns false when it has no kernel for `t` at this level; the caller then uses the scalar reference.
// Dequantization results are bit-identical to the scalar reference at every level.
#pragma once
#include <cstdint>

#include "backends/cpu/simd/simd.h"
#include "core/dtype.h"

SDN_DECLARE_ISA(bool dequant_row_simd(::sdn::DType t, const void* src, float* dst, int64_t n))
SDN_DECLARE_ISA(bool dot_row_simd(::sdn::DType t, const void* w, const float* x, int64_t n, float* out))

// Kernels for the remaining block types (quant_simd_ext.cpp): Q4_1, Q5_0, Q5_1, Q8_1, Q2_K, Q3_K, Q5_K, Q6_K,
// Q8_K.
// n is a validated multiple of the block size.
SDN_DECLARE_ISA(bool dequant_row_ext(::sdn::DType t, const uint8_t* src, float* dst, int64_t n))
SDN_DECLARE_ISA(bool dot_row_ext(::sdn::DType t, const uint8_t* w, const float* x, int64_t n, float* out))

// Scale searches of the K-quant quantizers (quant_fit.cpp); identical results at every level.
// kq_fit_affine32: 32 values x ~ s * q - m, q in [0, nmax], s >= 0, m >= 0.
// kq_fit_sym16: 16 values x ~ s * q, q in [-32, 31]; returns s.
SDN_DECLARE_ISA(void kq_fit_affine32(const float* x, int nmax, float* s, float* m))
SDN_DECLARE_ISA(float kq_fit_sym16(const float* x))

// Vectorised quantize_row for F16, BF16, Q8_0, Q4_0 (quant_simd_q.cpp); same bytes as the scalar reference.
SDN_DECLARE_ISA(bool quant_row_simd(::sdn::DType t, const float* x, void* dst, int64_t n))
