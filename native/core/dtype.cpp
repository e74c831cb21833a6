#include "core/dtype.h"

#include <cctype>
#include <cmath>
#include <cstring>

namespace sdn {

namespace {
struct Entry {
  DType t;
  DTypeTraits tr;
};
// Block sizes and bytes follow the GGUF block layouts (ENGINE-FACTS.md section 2.3).
const Entry kTypes[] = {
    {DType::F32, {"f32", 1, 4, false, true}},
    {DType::F16, {"f16", 1, 2, false, true}},
    {DType::Q4_0, {"q4_0", 32, 18, true, true}},
    {DType::Q4_1, {"q4_1", 32, 20, true, true}},
    {DType::Q5_0, {"q5_0", 32, 22, true, true}},
    {DType::Q5_1, {"q5_1", 32, 24, true, true}},
    {DType::Q8_0, {"q8_0", 32, 34, true, true}},
    {DType::Q8_1, {"q8_1", 32, 36, true, false}},
    {DType::Q2_K, {"q2_K", 256, 84, true, true}},
    {DType::Q3_K, {"q3_K", 256, 110, true, true}},
    {DType::Q4_K, {"q4_K", 256, 144, true, true}},
    {DType::Q5_K, {"q5_K", 256, 176, true, true}},
    {DType::Q6_K, {"q6_K", 256, 210, true, true}},
    {DType::Q8_K, {"q8_K", 256, 292, true, false}},
    {DType::I8, {"i8", 1, 1, false, false}},
    {DType::I16, {"i16", 1, 2, false, false}},
    {DType::I32, {"i32", 1, 4, false, false}},
    {DType::I64, {"i64", 1, 8, false, false}},
    {DType::F64, {"f64", 1, 8, false, false}},
    {DType::BF16, {"bf16", 1, 2, false, true}},
};
const DTypeTraits kInvalid = {"invalid", 0, 0, false, false};
}  // namespace

const DTypeTraits& dtype_traits(DType t) {
  for (const Entry& e : kTypes)
    if (e.t == t) return e.tr;
  return kInvalid;
}

bool dtype_known(uint32_t id) { return dtype_traits((DType)id).block_size != 0; }

DType dtype_from_name(const std::string& name) {
  std::string lower;
  for (char c : name) lower += (char)std::tolower((unsigned char)c);
  for (const Entry& e : kTypes) {
    std::string n = e.tr.name;
    for (char& c : n) c = (char)std::tolower((unsigned char)c);
    if (n == lower) return e.t;
  }
  return DType::Invalid;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0));
  }
  if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf
  if (absx < 0x38800000u) {                                     // subnormal or zero in f16
    if (absx < 0x33000000u) return (uint16_t)sign;              // < half of the smallest subnormal
    uint32_t man = (absx & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)(absx >> 23);  // 14 + (113 - e)
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t e = (absx >> 23) - 112;
  uint32_t man = absx & 0x7fffffu;
  uint32_t half = (e << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

}  // namespace sdn
