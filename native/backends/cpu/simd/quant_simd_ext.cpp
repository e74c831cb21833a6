// SIMD kernels for the less common block types: Q4_1, Q5_0, Q5_1, Q8_1, Q2_K, Q3_K, Q5_K, Q6_K, Q8_K
// (compiled per ISA).
//
// Each block type has one decoder, written once over a small vector vocabulary (W lanes of int32/float:
// 16 on AVX-512, 8 on AVX2, 4 on NEON) and handing each group of W decoded floats to a sink: StoreSink writes them
// (dequantize), DotSink multiplies them into x and accumulates (dot). Decoded values use exactly the float
// operations of the scalar reference (core/quant.cpp, core/quant_k.cpp), so dequantization is bit-identical.
// The plain C++ twin (#else) decodes with the scalar block decoders.
#include <cstring>

#include "backends/cpu/simd/quant_kernels.h"
#include "core/quant_impl.h"

#if SDN_ISA_avx512 || SDN_ISA_avx2
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#elif SDN_ISA_neon
#include <arm_neon.h>
// Like the reference, compiled without contraction, so decoded values cannot depend on the compiler's FMA fusing.
#include "core/fp_contract_off.h"
#endif

namespace sdn {
namespace cpu {
namespace SDN_ISA {

using namespace ::sdn::qimpl;

namespace {

[[maybe_unused]] bool ext_type(DType t) {
  switch (t) {
    case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_1:
    case DType::Q5_K: case DType::Q6_K: case DType::Q8_K: case DType::Q2_K: case DType::Q3_K:
      return true;
    default:
      return false;
  }
}

#if SDN_ISA_avx512 || SDN_ISA_avx2 || SDN_ISA_neon

#if SDN_ISA_avx512
constexpr int W = 16;
using V = __m512;
using VI = __m512i;
inline VI ld_u8(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)p)); }
inline VI ld_i8(const uint8_t* p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)); }
inline VI iand(VI a, int m) { return _mm512_and_si512(a, _mm512_set1_epi32(m)); }
inline VI ior(VI a, VI b) { return _mm512_or_si512(a, b); }
inline VI isrl(VI a, int s) { return _mm512_srl_epi32(a, _mm_cvtsi32_si128(s)); }
inline VI isll(VI a, int s) { return _mm512_sll_epi32(a, _mm_cvtsi32_si128(s)); }
inline VI isub(VI a, int k) { return _mm512_sub_epi32(a, _mm512_set1_epi32(k)); }
// lane j: (qh >> (first + j)) & 1
inline VI qh_bits(uint32_t qh, int first) {
  const VI iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return iand(_mm512_srlv_epi32(_mm512_set1_epi32((int)(qh >> first)), iota), 1);
}
inline V cvt(VI a) { return _mm512_cvtepi32_ps(a); }
inline V vset(float f) { return _mm512_set1_ps(f); }
inline V vzero() { return _mm512_setzero_ps(); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vld(const float* p) { return _mm512_loadu_ps(p); }
inline void vst(float* p, V v) { _mm512_storeu_ps(p, v); }
inline float hsum(V v) { return _mm512_reduce_add_ps(v); }
#elif SDN_ISA_neon
constexpr int W = 4;
using V = float32x4_t;
using VI = int32x4_t;
inline VI ld_u8(const uint8_t* p) {
  uint32_t u;
  std::memcpy(&u, p, 4);
  return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(u))))));
}
inline VI ld_i8(const uint8_t* p) {
  uint32_t u;
  std::memcpy(&u, p, 4);
  return vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(u)))));
}
inline VI iand(VI a, int m) { return vandq_s32(a, vdupq_n_s32(m)); }
inline VI ior(VI a, VI b) { return vorrq_s32(a, b); }
inline VI isrl(VI a, int s) { return vreinterpretq_s32_u32(vshlq_u32(vreinterpretq_u32_s32(a), vdupq_n_s32(-s))); }
inline VI isll(VI a, int s) { return vshlq_s32(a, vdupq_n_s32(s)); }
inline VI isub(VI a, int k) { return vsubq_s32(a, vdupq_n_s32(k)); }
inline VI qh_bits(uint32_t qh, int first) {
  static const int32_t neg_iota[4] = {0, -1, -2, -3};
  return iand(vreinterpretq_s32_u32(vshlq_u32(vdupq_n_u32(qh >> first), vld1q_s32(neg_iota))), 1);
}
inline V cvt(VI a) { return vcvtq_f32_s32(a); }
inline V vset(float f) { return vdupq_n_f32(f); }
inline V vzero() { return vdupq_n_f32(0.f); }
inline V vmul(V a, V b) { return vmulq_f32(a, b); }
inline V vadd(V a, V b) { return vaddq_f32(a, b); }
inline V vsub(V a, V b) { return vsubq_f32(a, b); }
inline V vfma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
inline V vld(const float* p) { return vld1q_f32(p); }
inline void vst(float* p, V v) { vst1q_f32(p, v); }
inline float hsum(V v) { return vaddvq_f32(v); }
#else
constexpr int W = 8;
using V = __m256;
using VI = __m256i;
inline VI ld_u8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p)); }
inline VI ld_i8(const uint8_t* p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)); }
inline VI iand(VI a, int m) { return _mm256_and_si256(a, _mm256_set1_epi32(m)); }
inline VI ior(VI a, VI b) { return _mm256_or_si256(a, b); }
inline VI isrl(VI a, int s) { return _mm256_srl_epi32(a, _mm_cvtsi32_si128(s)); }
inline VI isll(VI a, int s) { return _mm256_sll_epi32(a, _mm_cvtsi32_si128(s)); }
inline VI isub(VI a, int k) { return _mm256_sub_epi32(a, _mm256_set1_epi32(k)); }
inline VI qh_bits(uint32_t qh, int first) {
  const VI iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return iand(_mm256_srlv_epi32(_mm256_set1_epi32((int)(qh >> first)), iota), 1);
}
inline V cvt(VI a) { return _mm256_cvtepi32_ps(a); }
inline V vset(float f) { return _mm256_set1_ps(f); }
inline V vzero() { return _mm256_setzero_ps(); }
inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V vld(const float* p) { return _mm256_loadu_ps(p); }
inline void vst(float* p, V v) { _mm256_storeu_ps(p, v); }
inline float hsum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

struct StoreSink {
  float* y;
  void operator()(int64_t off, V v) { vst(y + off, v); }
};
struct DotSink {
  const float* x;
  V acc0 = vzero(), acc1 = vzero();
  void operator()(int64_t off, V v) {
    V t = vfma(v, vld(x + off), acc1);  // two chains, alternating
    acc1 = acc0;
    acc0 = t;
  }
};

// ---- block decoders: y[base + ...] --------------------------------------------------------------------------

template <class S>
inline void blk_q4_1(const uint8_t* b, S& s, int64_t base) {
  const V d = vset(rdf16(b)), m = vset(rdf16(b + 2));
  for (int j0 = 0; j0 < 16; j0 += W) {
    const VI v = ld_u8(b + 4 + j0);
    s(base + j0, vadd(vmul(cvt(iand(v, 15)), d), m));
    s(base + 16 + j0, vadd(vmul(cvt(isrl(v, 4)), d), m));
  }
}

template <class S>
inline void blk_q5_0(const uint8_t* b, S& s, int64_t base) {
  const V d = vset(rdf16(b));
  const uint32_t qh = rd32(b + 2);
  for (int j0 = 0; j0 < 16; j0 += W) {
    const VI v = ld_u8(b + 6 + j0);
    const VI lo = ior(iand(v, 15), isll(qh_bits(qh, j0), 4));
    const VI hi = ior(isrl(v, 4), isll(qh_bits(qh, 16 + j0), 4));
    s(base + j0, vmul(cvt(isub(lo, 16)), d));
    s(base + 16 + j0, vmul(cvt(isub(hi, 16)), d));
  }
}

template <class S>
inline void blk_q5_1(const uint8_t* b, S& s, int64_t base) {
  const V d = vset(rdf16(b)), m = vset(rdf16(b + 2));
  const uint32_t qh = rd32(b + 4);
  for (int j0 = 0; j0 < 16; j0 += W) {
    const VI v = ld_u8(b + 8 + j0);
    const VI lo = ior(iand(v, 15), isll(qh_bits(qh, j0), 4));
    const VI hi = ior(isrl(v, 4), isll(qh_bits(qh, 16 + j0), 4));
    s(base + j0, vadd(vmul(cvt(lo), d), m));
    s(base + 16 + j0, vadd(vmul(cvt(hi), d), m));
  }
}

template <class S>
inline void blk_q8_1(const uint8_t* b, S& s, int64_t base) {
  const V d = vset(rdf16(b));
  for (int j0 = 0; j0 < 32; j0 += W) s(base + j0, vmul(cvt(ld_i8(b + 4 + j0)), d));
}

template <class S>
inline void blk_q5_K(const uint8_t* b, S& s, int64_t base) {
  const float d = rdf16(b), dmin = rdf16(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int c = 0; c < 4; ++c) {
    int sc0, mn0, sc1, mn1;
    k4_scale_min(2 * c, b + 4, &sc0, &mn0);
    k4_scale_min(2 * c + 1, b + 4, &sc1, &mn1);
    const V d0 = vset(d * (float)sc0), m0 = vset(dmin * (float)mn0);
    const V d1 = vset(d * (float)sc1), m1 = vset(dmin * (float)mn1);
    for (int l0 = 0; l0 < 32; l0 += W) {
      const VI v = ld_u8(qs + 32 * c + l0), h = ld_u8(qh + l0);
      const VI lo = ior(iand(v, 15), isll(iand(isrl(h, 2 * c), 1), 4));
      const VI hi = ior(isrl(v, 4), isll(iand(isrl(h, 2 * c + 1), 1), 4));
      s(base + 64 * c + l0, vsub(vmul(d0, cvt(lo)), m0));
      s(base + 64 * c + 32 + l0, vsub(vmul(d1, cvt(hi)), m1));
    }
  }
}

template <class S>
inline void blk_q6_K(const uint8_t* b, S& s, int64_t base) {
  const float d = rdf16(b + 208);
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int h = 0; h < 2; ++h) {
    for (int l0 = 0; l0 < 32; l0 += W) {
      const VI a = ld_u8(b + 64 * h + l0), bb = ld_u8(b + 64 * h + 32 + l0), hv = ld_u8(b + 128 + 32 * h + l0);
      const int is = 8 * h + l0 / 16;
      const VI q0 = ior(iand(a, 15), isll(iand(hv, 3), 4));
      const VI q1 = ior(iand(bb, 15), isll(iand(isrl(hv, 2), 3), 4));
      const VI q2 = ior(isrl(a, 4), isll(iand(isrl(hv, 4), 3), 4));
      const VI q3 = ior(isrl(bb, 4), isll(isrl(hv, 6), 4));
      const int64_t o = base + 128 * h + l0;
      s(o, vmul(vset(d * (float)sc[is]), cvt(isub(q0, 32))));
      s(o + 32, vmul(vset(d * (float)sc[is + 2]), cvt(isub(q1, 32))));
      s(o + 64, vmul(vset(d * (float)sc[is + 4]), cvt(isub(q2, 32))));
      s(o + 96, vmul(vset(d * (float)sc[is + 6]), cvt(isub(q3, 32))));
    }
  }
}

template <class S>
inline void blk_q8_K(const uint8_t* b, S& s, int64_t base) {
  float df;
  std::memcpy(&df, b, 4);
  const V d = vset(df);
  for (int j0 = 0; j0 < 256; j0 += W) s(base + j0, vmul(d, cvt(ld_i8(b + 4 + j0))));
}

// Q2_K / Q3_K: sub-block i (16 elements, e0 = 16 i) takes its 2 low bits from qs[32h + 16g + l] >> 2j
// (h = e0 / 128, j = (e0 % 128) / 32, g = (e0 % 32) / 16); Q3_K's high bit is hmask[16g + l] >> (4h + j).
template <class S>
inline void blk_q2_K(const uint8_t* b, S& s, int64_t base) {
  const float d = rdf16(b + 80), dmin = rdf16(b + 82);
  for (int i = 0; i < 16; ++i) {
    const int e0 = 16 * i, h = e0 / 128, j = (e0 % 128) / 32, g = (e0 % 32) / 16;
    const V dl = vset(d * (float)(b[i] & 0x0F)), ml = vset(dmin * (float)(b[i] >> 4));
    for (int l0 = 0; l0 < 16; l0 += W) {
      const VI q = iand(isrl(ld_u8(b + 16 + 32 * h + 16 * g + l0), 2 * j), 3);
      s(base + e0 + l0, vsub(vmul(dl, cvt(q)), ml));
    }
  }
}

template <class S>
inline void blk_q3_K(const uint8_t* b, S& s, int64_t base) {
  const float d = rdf16(b + 108);
  for (int i = 0; i < 16; ++i) {
    const int e0 = 16 * i, h = e0 / 128, j = (e0 % 128) / 32, g = (e0 % 32) / 16;
    const V dl = vset(d * (float)k3_scale(b + 96, i));
    for (int l0 = 0; l0 < 16; l0 += W) {
      const VI low2 = iand(isrl(ld_u8(b + 32 + 32 * h + 16 * g + l0), 2 * j), 3);
      const VI hbit = iand(isrl(ld_u8(b + 16 * g + l0), 4 * h + j), 1);
      s(base + e0 + l0, vmul(dl, cvt(isub(ior(low2, isll(hbit, 2)), 4))));
    }
  }
}

template <class S>
void run(DType t, const uint8_t* b, int64_t n, S& s) {
  switch (t) {
    case DType::Q4_1: for (int64_t i = 0; i < n / 32; ++i) blk_q4_1(b + i * kQ4_1Bytes, s, 32 * i); break;
    case DType::Q5_0: for (int64_t i = 0; i < n / 32; ++i) blk_q5_0(b + i * kQ5_0Bytes, s, 32 * i); break;
    case DType::Q5_1: for (int64_t i = 0; i < n / 32; ++i) blk_q5_1(b + i * kQ5_1Bytes, s, 32 * i); break;
    case DType::Q8_1: for (int64_t i = 0; i < n / 32; ++i) blk_q8_1(b + i * kQ8_1Bytes, s, 32 * i); break;
    case DType::Q5_K: for (int64_t i = 0; i < n / 256; ++i) blk_q5_K(b + i * kQ5_KBytes, s, 256 * i); break;
    case DType::Q6_K: for (int64_t i = 0; i < n / 256; ++i) blk_q6_K(b + i * kQ6_KBytes, s, 256 * i); break;
    case DType::Q8_K: for (int64_t i = 0; i < n / 256; ++i) blk_q8_K(b + i * kQ8_KBytes, s, 256 * i); break;
    case DType::Q2_K: for (int64_t i = 0; i < n / 256; ++i) blk_q2_K(b + i * kQ2_KBytes, s, 256 * i); break;
    case DType::Q3_K: for (int64_t i = 0; i < n / 256; ++i) blk_q3_K(b + i * kQ3_KBytes, s, 256 * i); break;
    default: break;
  }
}

}  // namespace

bool dequant_row_ext(DType t, const uint8_t* src, float* dst, int64_t n) {
  if (!ext_type(t)) return false;
  StoreSink s{dst};
  run(t, src, n, s);
  return true;
}

bool dot_row_ext(DType t, const uint8_t* w, const float* x, int64_t n, float* out) {
  if (!ext_type(t)) return false;
  DotSink s{x};
  run(t, w, n, s);
  *out = hsum(vadd(s.acc0, s.acc1));
  return true;
}

#else  // plain C++ twin: scalar block decoders

using BlockDecoder = void (*)(const uint8_t*, float*);
BlockDecoder ext_decoder(DType t) {
  switch (t) {
    case DType::Q4_1: return dequant_block_q4_1;
    case DType::Q5_0: return dequant_block_q5_0;
    case DType::Q5_1: return dequant_block_q5_1;
    case DType::Q8_1: return dequant_block_q8_1;
    case DType::Q5_K: return dequant_block_q5_K;
    case DType::Q6_K: return dequant_block_q6_K;
    case DType::Q8_K: return dequant_block_q8_K;
    case DType::Q2_K: return dequant_block_q2_K;
    case DType::Q3_K: return dequant_block_q3_K;
    default: return nullptr;
  }
}

}  // namespace

bool dequant_row_ext(DType t, const uint8_t* src, float* dst, int64_t n) {
  BlockDecoder dec = ext_decoder(t);
  if (!dec) return false;
  const DTypeTraits& tr = dtype_traits(t);
  for (int64_t b = 0; b < n / tr.block_size; ++b) dec(src + b * tr.block_bytes, dst + b * tr.block_size);
  return true;
}

bool dot_row_ext(DType t, const uint8_t* w, const float* x, int64_t n, float* out) {
  BlockDecoder dec = ext_decoder(t);
  if (!dec) return false;
  const DTypeTraits& tr = dtype_traits(t);
  float buf[256];
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t b = 0; b < n / tr.block_size; ++b) {
    dec(w + b * tr.block_bytes, buf);
    const float* xb = x + b * tr.block_size;
    for (int i = 0; i < tr.block_size; i += 4)
      for (int k = 0; k < 4; ++k) acc[k] += buf[i + k] * xb[i + k];
  }
  *out = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  return true;
}

#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
