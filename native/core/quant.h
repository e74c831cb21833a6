// Block quantization formats (bit-exact GGUF layouts) and row kernels over them.
// All functions take element counts that are multiples of the type's block size (checked: InvalidArgument).
// Unknown types, and types a function does not handle, throw ErrorCode::Unsupported naming the type.
// Implementations dispatch at run time to the best SIMD level (core/cpu.h), with scalar twins for testing.
//
// Types handled:
//   quantize_row  : F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K
//   dequantize_row: all of the above plus I8, I16, I32, I64 (converted to float)
//   dot_row       : same as dequantize_row
// Dequantization is bit-exact across SIMD levels (each value is computed with the same float operations as the
// scalar reference); dot products agree within f32 rounding (summation order differs).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace sdn {

// f32 -> `t`. dst must hold dtype_row_bytes(t, n) bytes. Works for every weight type (F32/F16/BF16 too).
// Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q8_1 follow ggml's reference rounding as documented in ENGINE-FACTS 3.2-3.7 (the
// worked Q4_0 and Q8_0 examples there are reproduced byte for byte; other cases not compared against ggml);
// the K-quants use our own least-squares scale search (layout identical, bytes may differ from ggml's).
// Output bytes are the same at every SIMD level for finite input; NaN/Inf only affect their own block.
// Typical relative RMS error on N(0,1) rows: f16 2.1e-4, bf16 1.7e-3, q8_0 5.4e-3, q6_K 0.017, q5_1 0.038,
// q5_K 0.036, q5_0 0.043, q4_K 0.071, q4_1 0.078, q4_0 0.086, q3_K 0.147, q2_K 0.27.
void quantize_row(DType t, const float* src, void* dst, int64_t n);
// `t` -> f32. Works for every weight type and for I8/I16/I32/I64/F64 (converted to float).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// sum_i dequant(w)[i] * x[i], f32 accumulation.
float dot_row(DType t, const void* w, const float* x, int64_t n);

// Dequantizes a 2-D range of a weight matrix into a float buffer (for GEMM/conv weight-panel packing).
//   src       : first byte of the first row to read
//   row_bytes : distance in bytes between consecutive source rows (dtype_row_bytes(t, full_row_length) for a
//               contiguous tensor)
//   rows,cols : how many rows, and how many elements of each row, to convert; cols must be a multiple of the
//               block size. To start at column k0 (a multiple of the block size), pass
//               src + dtype_row_bytes(t, k0).
//   dst       : output; row r goes to dst + r * dst_stride (dst_stride in floats, >= cols)
// Same values as dequantize_row on each row, dispatched to the best SIMD level; no allocation, thread-safe
// (callers split rows across threads themselves).
void dequantize_rows(DType t, const void* src, size_t row_bytes, int64_t rows, int64_t cols, float* dst,
                     int64_t dst_stride);

// Scalar reference versions (always available; used by tests to check the dispatched ones).
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n);
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);
float dot_row_ref(DType t, const void* w, const float* x, int64_t n);

}  // namespace sdn
