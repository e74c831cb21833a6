// Weight and activation element types. Ids equal the GGUF/ggml type ids so files map 1:1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sdn {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  Invalid = 0xffffffffu,
};

struct DTypeTraits {
  const char* name;   // lower-case ggml name ("f32", "q4_K", ...)
  int block_size;     // elements per block (1 for plain types)
  int block_bytes;    // bytes per block
  bool quantized;     // block-quantized
  bool weight_type;   // usable as a weight type by matmul/conv kernels
};

// Traits of a known type; DType::Invalid traits (block_size 0) for unknown ids.
const DTypeTraits& dtype_traits(DType t);
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }
// Parses a name as written by users or ggml ("q8_0", "Q4_K", "f16", "bf16"); Invalid if unknown.
DType dtype_from_name(const std::string& name);
// True if `id` is a type id this engine knows.
bool dtype_known(uint32_t id);
// Bytes for a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeTraits& tr = dtype_traits(t);
  return (size_t)(n / tr.block_size) * (size_t)tr.block_bytes;
}

// Scalar conversions (exact, IEEE round-to-nearest-even for the narrowing ones).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

}  // namespace sdn
