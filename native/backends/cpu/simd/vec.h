// A thin vector layer for the simd/ kernels: the same names over AVX-512 (16 lanes), AVX2+FMA (8 lanes) and
// AArch64 NEON (4 lanes), so a kernel is written once for all. Only included from simd/*.cpp (compiled once per
// ISA). When none of these ISAs is enabled SDN_VEC is 0 and kernels use their plain C++ twin.
//
// Vector math here (exp, erfc) is our own: Cody-Waite range reduction plus a Taylor polynomial for exp (degree 7 on
// |r| <= ln2/2: truncation error < 6e-8 relative, about 2 ulp overall), and a Chebyshev-fitted erfc of the form
// t * exp(poly(t) - z^2), t = 1/(1 + z/2) (published coefficients; fractional error < 1.2e-7 for z >= 0).
// Measured against double over x in [-10, 10] (step 5e-6), max relative error: GELU-erf 4.8e-7, SiLU 1.5e-7;
// GELU-tanh 2.3e-6 and quick-GELU 6.8e-7 for |x| < 5 (beyond, where |y| < 1e-9, the float rounding of the
// sigmoid's argument gives up to 1e-5 relative; absolute errors stay below 1e-6 everywhere).
#pragma once
#include <cstdint>
#include <cstring>

#if SDN_ISA_avx512 || SDN_ISA_avx2
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's own _mm512_reduce_* helpers trip -Wmaybe-uninitialized (_mm256_undefined_pd); not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define SDN_VEC 1
#elif SDN_ISA_neon
#include <arm_neon.h>
#define SDN_VEC 1
#else
#define SDN_VEC 0
#endif

namespace sdn {
namespace cpu {
namespace SDN_ISA {
namespace vec {

#if SDN_ISA_avx512
using F = __m512;
using I = __m512i;
constexpr int W = 16;
inline F load(const float* p) { return _mm512_loadu_ps(p); }
inline F load_n(const float* p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p); }
inline void store(float* p, F v) { _mm512_storeu_ps(p, v); }
inline void store_n(float* p, F v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v); }
inline F set1(float x) { return _mm512_set1_ps(x); }
inline F zero() { return _mm512_setzero_ps(); }
inline F add(F a, F b) { return _mm512_add_ps(a, b); }
inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
inline F div(F a, F b) { return _mm512_div_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }   // a*b + c
inline F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); } // c - a*b
inline F max(F a, F b) { return _mm512_max_ps(a, b); }
inline F min(F a, F b) { return _mm512_min_ps(a, b); }
inline F abs(F a) { return _mm512_abs_ps(a); }
inline F round(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^n for integral-valued n in [-126, 127]
inline F pow2i(F n) {
  I e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_castsi512_ps(e);
}
// x < lim ? 0 : v
inline F zero_below(F x, float lim, F v) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(lim), _CMP_GE_OQ), v);
}
// x >= 0 ? a : b
inline F select_nonneg(F x, F a, F b) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a);
}
inline float hsum(F v) { return _mm512_reduce_add_ps(v); }
inline float hmax(F v) { return _mm512_reduce_max_ps(v); }
#elif SDN_ISA_avx2
using F = __m256;
using I = __m256i;
constexpr int W = 8;
inline __m256i tail_mask(int n) {
  static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
}
inline F load(const float* p) { return _mm256_loadu_ps(p); }
inline F load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
inline void store(float* p, F v) { _mm256_storeu_ps(p, v); }
inline void store_n(float* p, F v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
inline F set1(float x) { return _mm256_set1_ps(x); }
inline F zero() { return _mm256_setzero_ps(); }
inline F add(F a, F b) { return _mm256_add_ps(a, b); }
inline F sub(F a, F b) { return _mm256_sub_ps(a, b); }
inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
inline F div(F a, F b) { return _mm256_div_ps(a, b); }
inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
inline F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
inline F max(F a, F b) { return _mm256_max_ps(a, b); }
inline F min(F a, F b) { return _mm256_min_ps(a, b); }
inline F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline F round(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline F pow2i(F n) {
  I e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_castsi256_ps(e);
}
inline F zero_below(F x, float lim, F v) { return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(lim), _CMP_GE_OQ), v); }
inline F select_nonneg(F x, F a, F b) {
  return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
inline float hsum(F v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(F v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#elif SDN_ISA_neon
// AArch64 Advanced SIMD: 4 lanes. No masked loads/stores, so the tails go through a small stack buffer.
using F = float32x4_t;
using I = int32x4_t;
constexpr int W = 4;
inline F load(const float* p) { return vld1q_f32(p); }
inline F load_n(const float* p, int n) {
  float t[4] = {0.f, 0.f, 0.f, 0.f};
  std::memcpy(t, p, (size_t)n * sizeof(float));
  return vld1q_f32(t);
}
inline void store(float* p, F v) { vst1q_f32(p, v); }
inline void store_n(float* p, F v, int n) {
  float t[4];
  vst1q_f32(t, v);
  std::memcpy(p, t, (size_t)n * sizeof(float));
}
inline F set1(float x) { return vdupq_n_f32(x); }
inline F zero() { return vdupq_n_f32(0.f); }
inline F add(F a, F b) { return vaddq_f32(a, b); }
inline F sub(F a, F b) { return vsubq_f32(a, b); }
inline F mul(F a, F b) { return vmulq_f32(a, b); }
inline F div(F a, F b) { return vdivq_f32(a, b); }
inline F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }   // a*b + c
inline F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }  // c - a*b
inline F max(F a, F b) { return vmaxq_f32(a, b); }
inline F min(F a, F b) { return vminq_f32(a, b); }
inline F abs(F a) { return vabsq_f32(a); }
inline F round(F a) { return vrndnq_f32(a); }  // to nearest, ties to even (as _MM_FROUND_TO_NEAREST_INT)
inline F pow2i(F n) {
  I e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vreinterpretq_f32_s32(e);
}
inline F zero_below(F x, float lim, F v) {
  return vreinterpretq_f32_u32(vandq_u32(vcgeq_f32(x, vdupq_n_f32(lim)), vreinterpretq_u32_f32(v)));
}
inline F select_nonneg(F x, F a, F b) { return vbslq_f32(vcgeq_f32(x, vdupq_n_f32(0.f)), a, b); }
inline float hsum(F v) { return vaddvq_f32(v); }
inline float hmax(F v) { return vmaxvq_f32(v); }
#endif

#if SDN_VEC
constexpr float kExpHi = 88.0f;       // exp(88) = 1.65e38 (finite)
constexpr float kExpLo = -87.33654f;  // exp(kExpLo) = 2^-126 (smallest normal); below it the result is 0

// e^x. Inputs above kExpHi are clamped (result 1.65e38), below kExpLo give 0, NaN stays NaN only in the sense
// that the output is unspecified (callers never pass NaN on purpose).
inline F exp(F x) {
  F xc = min(max(x, set1(kExpLo)), set1(kExpHi));
  F n = round(mul(xc, set1(1.4426950408889634f)));
  F r = fnmadd(n, set1(0.693145751953125f), xc);  // ln2 split into an exact high part and a small low part
  r = fnmadd(n, set1(1.4286068203094172e-06f), r);
  F p = set1(1.f / 5040.f);
  p = fmadd(p, r, set1(1.f / 720.f));
  p = fmadd(p, r, set1(1.f / 120.f));
  p = fmadd(p, r, set1(1.f / 24.f));
  p = fmadd(p, r, set1(1.f / 6.f));
  p = fmadd(p, r, set1(0.5f));
  p = fmadd(p, r, set1(1.f));
  p = fmadd(p, r, set1(1.f));
  return zero_below(x, kExpLo, mul(p, pow2i(n)));
}

// 2^x for x <= 0 (softmax weights): 2^x = 2^n * p(x - n), n = round(x), |x - n| <= 1/2, p the degree-6 Taylor
// polynomial of e^(r ln2) (truncation error < 1.2e-7 relative). Results below 2^-126 flush towards 0; -inf gives 0.
inline F exp2_nonpos(F x) {
  x = max(x, set1(-150.f));
  F n = round(x);
  F r = sub(x, n);
  F p = set1(1.5403530393381606e-04f);  // ln2^6 / 720
  p = fmadd(p, r, set1(1.3333558146428443e-03f));  // ln2^5 / 120
  p = fmadd(p, r, set1(9.6181291076284772e-03f));  // ln2^4 / 24
  p = fmadd(p, r, set1(5.5504108664821580e-02f));  // ln2^3 / 6
  p = fmadd(p, r, set1(2.4022650695910071e-01f));  // ln2^2 / 2
  p = fmadd(p, r, set1(6.9314718055994531e-01f));  // ln2
  p = fmadd(p, r, set1(1.f));
#if SDN_ISA_avx512
  return _mm512_scalef_ps(p, n);
#else
  return zero_below(x, -126.f, mul(p, pow2i(max(n, set1(-126.f)))));
#endif
}

// erfc(z) for z >= 0, given z^2 = z2hi + z2lo exactly (fractional error about 2e-7 in float).
inline F erfc_nonneg(F z, F z2hi, F z2lo) {
  F t = div(set1(1.f), fmadd(z, set1(0.5f), set1(1.f)));
  F p = set1(0.17087277f);
  p = fmadd(p, t, set1(-0.82215223f));
  p = fmadd(p, t, set1(1.48851587f));
  p = fmadd(p, t, set1(-1.13520398f));
  p = fmadd(p, t, set1(0.27886807f));
  p = fmadd(p, t, set1(-0.18628806f));
  p = fmadd(p, t, set1(0.09678418f));
  p = fmadd(p, t, set1(0.37409196f));
  p = fmadd(p, t, set1(1.00002368f));
  p = fmadd(p, t, set1(-1.26551223f));
  // exp(-z^2 + p) as exp(-z2hi) * exp(p - z2lo), so the large part of z^2 is not rounded together with p
  return mul(t, mul(exp(sub(zero(), z2hi)), exp(sub(p, z2lo))));
}

// x * sigmoid(a x) = x / (1 + e^{-a x})
inline F x_sigmoid(F x, F ax) { return div(x, add(set1(1.f), exp(sub(zero(), ax)))); }

inline F silu(F x) { return x_sigmoid(x, x); }
inline F gelu_erf(F x) {
  // z = |x| / sqrt 2; z^2 = x^2 / 2 is formed from the exact product x*x = hi + lo (FMA), so no rounding of z
  // feeds the exponential (that rounding alone would cost ~1e-6 relative at x = -5).
  F hi = mul(x, x);
  F lo = fmadd(x, x, sub(zero(), hi));
  F half = set1(0.5f);
  F c = erfc_nonneg(mul(abs(x), set1(0.70710678118654752f)), mul(hi, half), mul(lo, half));
  F f = select_nonneg(x, sub(set1(2.f), c), c);
  return mul(mul(x, set1(0.5f)), f);
}
// 0.5 x (1 + tanh(u)) = x * sigmoid(2u)
inline F gelu_tanh(F x) {
  F x3 = mul(mul(x, x), x);
  F u = mul(set1(0.7978845608028654f), fmadd(x3, set1(0.044715f), x));
  return x_sigmoid(x, add(u, u));
}
inline F quick_gelu(F x) { return x_sigmoid(x, mul(x, set1(1.702f))); }
#endif

}  // namespace vec
}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
