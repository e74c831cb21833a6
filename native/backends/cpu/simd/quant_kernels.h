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
