// Vectorised quantize_row for the common conversion targets F16, BF16, Q8_0, Q4_0 (compiled per ISA).
// Every kernel writes exactly the bytes of the scalar reference (core/quant.cpp, core/dtype.cpp):
//   F16  : F16C conversion with round-to-nearest-even (same as sdn::f32_to_f16, incl. subnormals, inf, NaN)
//   BF16 : the integer round-to-nearest-even of sdn::f32_to_bf16, NaN quieted the same way
//   Q8_0 : q = roundf(x * id) reproduced exactly (truncate, then step away from zero when |frac| >= 0.5)
//   Q4_0 : q = min(15, trunc(x * id + 8.5)), the reference's first-largest-magnitude element sets the sign of d
// NEON mirrors the AVX2 code with 4-lane vectors. The plain build (#else) has no kernels here: quantize_row then runs the scalar reference, which is the twin.
#include <cmath>
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
#endif

#include "core/fp_contract_off.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

using namespace ::sdn::qimpl;

#if SDN_ISA_avx512 || SDN_ISA_avx2

namespace {

// 8 floats at a time (AVX2 encodings; the AVX-512 copy runs the same code, it is memory-bound anyway).
inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), v); }
inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

void q_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

void q_bf16(const float* x, uint16_t* y, int64_t n) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
    const __m256i rounded =
        _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one))), 16);
    const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
    const __m256i r = _mm256_blendv_epi8(rounded, qn, nan);
    // pack 8 x u32 (values < 65536) to 8 x u16
    const __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128((__m128i*)(y + i), _mm_packus_epi32(lo, hi));
  }
  for (; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// roundf (half away from zero), exactly: t = trunc(v); t += sign(v) where |v - t| >= 0.5 (v - t is exact).
inline __m256i roundf8(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = abs8(_mm256_sub_ps(v, t));
  const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                    _mm256_or_ps(_mm256_set1_ps(1.f), _mm256_and_ps(v, _mm256_set1_ps(-0.f))));
  return _mm256_cvttps_epi32(_mm256_add_ps(t, step));
}

// 32 int32 (4 vectors) -> 32 int8 in order
inline void store_i8x32(int8_t* dst, const __m256i q[4]) {
  const __m256i a = _mm256_packs_epi32(q[0], q[1]);  // lanes interleaved by 128-bit halves
  const __m256i b = _mm256_packs_epi32(q[2], q[3]);
  __m256i c = _mm256_packs_epi16(a, b);
  c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256((__m256i*)dst, c);
}

void q_q8_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t k = 0; k < nb; ++k, x += 32, b += kQ8_0Bytes) {
    __m256 v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + 8 * j);
    const float amax = hmax8(_mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3]))));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    wr16(b, f32_to_f16(d));
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = roundf8(_mm256_mul_ps(v[j], vid));
    store_i8x32(reinterpret_cast<int8_t*>(b + 2), q);
  }
}

void q_q4_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t k = 0; k < nb; ++k, x += 32, b += kQ4_0Bytes) {
    __m256 v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + 8 * j);
    const __m256 am = _mm256_max_ps(_mm256_max_ps(abs8(v[0]), abs8(v[1])), _mm256_max_ps(abs8(v[2]), abs8(v[3])));
    const float amax = hmax8(am);
    float vmax = 0.f;
    if (amax > 0.f) {  // first element with the largest magnitude (the reference's choice)
      const __m256 a = _mm256_set1_ps(amax);
      for (int j = 0; j < 4; ++j) {
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(abs8(v[j]), a, _CMP_EQ_OQ));
        if (m) {
          vmax = x[8 * j + __builtin_ctz((unsigned)m)];
          break;
        }
      }
    }
    const float d = vmax / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    wr16(b, f32_to_f16(d));
    const __m256 vid = _mm256_set1_ps(id), off = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15);
    __m256i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[j], vid), off)), fifteen);
    // elements 0..15 -> low nibbles, 16..31 -> high nibbles
    const __m256i lo = _mm256_packs_epi32(q[0], q[1]);  // 16 x i16 (128-bit lane interleaved)
    const __m256i hi = _mm256_packs_epi32(q[2], q[3]);
    const __m256i bytes = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));  // each i16 < 256
    __m256i p = _mm256_packus_epi16(bytes, bytes);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
    _mm_storeu_si128((__m128i*)(b + 2), _mm256_castsi256_si128(p));
  }
}

}  // namespace

bool quant_row_simd(DType t, const float* x, void* dst, int64_t n) {
  switch (t) {
    case DType::F16: q_f16(x, static_cast<uint16_t*>(dst), n); return true;
    case DType::BF16: q_bf16(x, static_cast<uint16_t*>(dst), n); return true;
    case DType::Q8_0: q_q8_0(x, static_cast<uint8_t*>(dst), n / 32); return true;
    case DType::Q4_0: q_q4_0(x, static_cast<uint8_t*>(dst), n / 32); return true;
    default: return false;
  }
}

#elif SDN_ISA_neon

namespace {

void q_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {  // FCVT rounds to nearest even (FPCR default), subnormals kept, NaN quieted
    const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
    vst1q_u16(y + i, vreinterpretq_u16_f16(h));
  }
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

void q_bf16(const float* x, uint16_t* y, int64_t n) {
  const uint32x4_t absmask = vdupq_n_u32(0x7fffffffu), inf = vdupq_n_u32(0x7f800000u);
  const uint32x4_t bias = vdupq_n_u32(0x7fffu), one = vdupq_n_u32(1u), quiet = vdupq_n_u32(0x40u);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(x + i));
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, absmask), inf);
    const uint32x4_t hi = vshrq_n_u32(u, 16);
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(u, vaddq_u32(bias, vandq_u32(hi, one))), 16);
    const uint32x4_t r = vbslq_u32(nan, vorrq_u32(hi, quiet), rounded);
    vst1_u16(y + i, vmovn_u32(r));
  }
  for (; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// roundf (half away from zero), exactly: t = trunc(v); t += sign(v) where |v - t| >= 0.5 (v - t is exact).
inline int32x4_t roundf4(float32x4_t v) {
  const float32x4_t t = vrndq_f32(v);
  const float32x4_t frac = vabsq_f32(vsubq_f32(v, t));
  const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(v), vdupq_n_u32(0x80000000u));
  const uint32x4_t unit = vorrq_u32(vreinterpretq_u32_f32(vdupq_n_f32(1.f)), sign);
  const uint32x4_t step = vandq_u32(vcgeq_f32(frac, vdupq_n_f32(0.5f)), unit);
  return vcvtq_s32_f32(vaddq_f32(t, vreinterpretq_f32_u32(step)));
}

// 16 int32 (4 vectors) -> 16 int8 in order, saturating
inline int8x16_t narrow_i8x16(const int32x4_t q[4]) {
  const int16x8_t a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
  const int16x8_t b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
  return vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
}

inline float absmax32(const float32x4_t v[8]) {
  float32x4_t m = vabsq_f32(v[0]);
  for (int j = 1; j < 8; ++j) m = vmaxq_f32(m, vabsq_f32(v[j]));
  return vmaxvq_f32(m);
}

void q_q8_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t k = 0; k < nb; ++k, x += 32, b += kQ8_0Bytes) {
    float32x4_t v[8];
    for (int j = 0; j < 8; ++j) v[j] = vld1q_f32(x + 4 * j);
    const float amax = absmax32(v);
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    wr16(b, f32_to_f16(d));
    const float32x4_t vid = vdupq_n_f32(id);
    int32x4_t q[8];
    for (int j = 0; j < 8; ++j) q[j] = roundf4(vmulq_f32(v[j], vid));
    int8_t* dst = reinterpret_cast<int8_t*>(b + 2);
    vst1q_s8(dst, narrow_i8x16(q));
    vst1q_s8(dst + 16, narrow_i8x16(q + 4));
  }
}

void q_q4_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t k = 0; k < nb; ++k, x += 32, b += kQ4_0Bytes) {
    float32x4_t v[8];
    for (int j = 0; j < 8; ++j) v[j] = vld1q_f32(x + 4 * j);
    const float amax = absmax32(v);
    float vmax = 0.f;
    if (amax > 0.f) {  // first element with the largest magnitude (the reference's choice)
      for (int j = 0; j < 32; ++j)
        if (std::fabs(x[j]) == amax) {
          vmax = x[j];
          break;
        }
    }
    const float d = vmax / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    wr16(b, f32_to_f16(d));
    const float32x4_t vid = vdupq_n_f32(id), off = vdupq_n_f32(8.5f);
    const int32x4_t fifteen = vdupq_n_s32(15);
    int32x4_t q[8];
    for (int j = 0; j < 8; ++j) q[j] = vminq_s32(vcvtq_s32_f32(vaddq_f32(vmulq_f32(v[j], vid), off)), fifteen);
    // elements 0..15 -> low nibbles, 16..31 -> high nibbles (all q in [0, 15])
    const uint8x16_t lo = vreinterpretq_u8_s8(narrow_i8x16(q)), hi = vreinterpretq_u8_s8(narrow_i8x16(q + 4));
    vst1q_u8(b + 2, vorrq_u8(lo, vshlq_n_u8(hi, 4)));
  }
}

}  // namespace

bool quant_row_simd(DType t, const float* x, void* dst, int64_t n) {
  switch (t) {
    case DType::F16: q_f16(x, static_cast<uint16_t*>(dst), n); return true;
    case DType::BF16: q_bf16(x, static_cast<uint16_t*>(dst), n); return true;
    case DType::Q8_0: q_q8_0(x, static_cast<uint8_t*>(dst), n / 32); return true;
    case DType::Q4_0: q_q4_0(x, static_cast<uint8_t*>(dst), n / 32); return true;
    default: return false;
  }
}

#else

bool quant_row_simd(DType t, const float* x, void* dst, int64_t n) { return false; }

#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
