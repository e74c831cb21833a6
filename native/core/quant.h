// Block quantization formats (bit-exact GGUF layouts) and row kernels over them.
// All functions take element counts that are multiples of the type's block size (checked: InvalidArgument).
// Implementations dispatch at run time to the best SIMD level (core/cpu.h), with scalar twins for testing.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace sdn {

// f32 -> `t`. dst must hold dtype_row_bytes(t, n) bytes. Works for every weight type (F32/F16/BF16 too).
void quantize_row(DType t, const float* src, void* dst, int64_t n);
// `t` -> f32. Works for every weight type and for I8/I16/I32/I64/F64 (converted to float).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// sum_i dequant(w)[i] * x[i], f32 accumulation.
float dot_row(DType t, const void* w, const float* x, int64_t n);

// Scalar reference versions (always available; used by tests to check the dispatched ones).
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n);
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);
float dot_row_ref(DType t, const void* w, const float* x, int64_t n);

}  // namespace sdn
