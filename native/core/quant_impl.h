// Internals shared by the quantization code in core/ (scalar references) and the SIMD kernels in
// backends/cpu/simd/quant_*.cpp: block byte layouts (ENGINE-FACTS.md section 3) and small helpers.
// Not a public interface.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace sdn {
namespace qimpl {

// Block sizes.
constexpr int QK = 32;    // legacy formats
constexpr int QKK = 256;  // K-quants super-block

// Byte sizes of one block.
constexpr int kQ4_0Bytes = 18, kQ4_1Bytes = 20, kQ5_0Bytes = 22, kQ5_1Bytes = 24, kQ8_0Bytes = 34, kQ8_1Bytes = 36;
constexpr int kQ2_KBytes = 84, kQ3_KBytes = 110, kQ4_KBytes = 144, kQ5_KBytes = 176, kQ6_KBytes = 210, kQ8_KBytes = 292;

inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void wr16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void wr32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline float rdf16(const uint8_t* p) { return f16_to_f32(rd16(p)); }
// Super-block scales are stored as fp16: cap at the largest finite half so absurdly large inputs saturate
// instead of producing inf (and NaN on dequantization).
inline float f16_cap(float v) { return v < 65504.f ? v : 65504.f; }

// Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes q.
inline void k4_scale_min(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
// Inverse of k4_scale_min: packs eight 6-bit scales and mins (each 0..63) into 12 bytes.
inline void k4_pack_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[12]) {
  for (int j = 0; j < 4; ++j) {
    q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    q[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
  }
}

// Q3_K: signed 6-bit scale (-32..31) of sub-block i (0..15) from the 12 packed bytes b.
inline int k3_scale(const uint8_t* b, int i) {
  const int low4 = i < 8 ? (b[i] & 0x0F) : (b[i - 8] >> 4);
  const int high2 = (b[8 + (i % 4)] >> (2 * (i / 4))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

// Scalar block decoders (one block each), used by the references and by the plain-C++ SIMD fallbacks.
void dequant_block_q4_0(const uint8_t* b, float* y);
void dequant_block_q4_1(const uint8_t* b, float* y);
void dequant_block_q5_0(const uint8_t* b, float* y);
void dequant_block_q5_1(const uint8_t* b, float* y);
void dequant_block_q8_0(const uint8_t* b, float* y);
void dequant_block_q8_1(const uint8_t* b, float* y);
void dequant_block_q2_K(const uint8_t* b, float* y);
void dequant_block_q3_K(const uint8_t* b, float* y);
void dequant_block_q4_K(const uint8_t* b, float* y);
void dequant_block_q5_K(const uint8_t* b, float* y);
void dequant_block_q6_K(const uint8_t* b, float* y);
void dequant_block_q8_K(const uint8_t* b, float* y);
// The scalar decoder of a block-quantized type, or nullptr for plain types. Defined out of line in quant.cpp
// (never inline: the per-ISA SIMD files must not instantiate their own copies).
using BlockDecoder = void (*)(const uint8_t*, float*);
BlockDecoder block_decoder(DType t);

// K-quant quantizers (quant_k.cpp): nblocks super-blocks of 256 values. `fit` supplies the per-sub-block scale
// searches (backends/cpu/simd/quant_fit.cpp; every SIMD level returns identical results).
struct KQuantFit {
  void (*affine32)(const float* x, int nmax, float* s, float* m);
  float (*sym16)(const float* x);
};
void quantize_q4_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit);
void quantize_q5_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit);
void quantize_q6_K(const float* x, uint8_t* out, int64_t nblocks, const KQuantFit& fit);
void quantize_q8_K(const float* x, uint8_t* out, int64_t nblocks);
// Q2_K / Q3_K (rare in SD files; plain scalar scale search).
void quantize_q2_K(const float* x, uint8_t* out, int64_t nblocks);
void quantize_q3_K(const float* x, uint8_t* out, int64_t nblocks);

// Throws InvalidArgument / Unsupported for a bad (type, n) pair; `what` names the operation in the message.
void check_row(DType t, int64_t n, const char* what);

}  // namespace qimpl
}  // namespace sdn
