// Winograd F(4x4, 3x3) transforms (see wino_kernels.h). The arithmetic is written once over a 16-lane vector type
// `vf` (one zmm register on AVX-512, four q registers on NEON, a plain 16-float array elsewhere); loads and stores have AVX-512 fast paths
// (contiguous loads + permutes instead of gathers, interleaving stores) with plain C++ twins. No STL / header inline
// functions (see gemm_kernels.cpp for why).
#include "backends/cpu/simd/wino_kernels.h"

#if SDN_ISA_avx512
#include <immintrin.h>
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#elif SDN_ISA_neon
#include <arm_neon.h>
#endif

namespace sdn {
namespace cpu {
namespace SDN_ISA {

namespace {

constexpr int L = 16;

#if SDN_ISA_avx512
struct vf {
  __m512 v;
};
inline vf operator+(vf a, vf b) { return {_mm512_add_ps(a.v, b.v)}; }
inline vf operator-(vf a, vf b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline vf operator*(float s, vf a) { return {_mm512_mul_ps(_mm512_set1_ps(s), a.v)}; }
inline vf neg(vf a) { return {_mm512_sub_ps(_mm512_setzero_ps(), a.v)}; }
inline vf splat(float s) { return {_mm512_set1_ps(s)}; }
inline vf load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, vf a) { _mm512_storeu_ps(p, a.v); }
#elif SDN_ISA_neon
// four q registers per 16-lane vector
struct vf {
  float32x4_t v[4];
};
inline vf operator+(vf a, vf b) {
  for (int q = 0; q < 4; ++q) a.v[q] = vaddq_f32(a.v[q], b.v[q]);
  return a;
}
inline vf operator-(vf a, vf b) {
  for (int q = 0; q < 4; ++q) a.v[q] = vsubq_f32(a.v[q], b.v[q]);
  return a;
}
inline vf operator*(float s, vf a) {
  for (int q = 0; q < 4; ++q) a.v[q] = vmulq_n_f32(a.v[q], s);
  return a;
}
inline vf neg(vf a) {
  for (int q = 0; q < 4; ++q) a.v[q] = vnegq_f32(a.v[q]);
  return a;
}
inline vf splat(float s) {
  vf a;
  for (int q = 0; q < 4; ++q) a.v[q] = vdupq_n_f32(s);
  return a;
}
inline vf load(const float* p) {
  vf a;
  for (int q = 0; q < 4; ++q) a.v[q] = vld1q_f32(p + 4 * q);
  return a;
}
inline void store(float* p, vf a) {
  for (int q = 0; q < 4; ++q) vst1q_f32(p + 4 * q, a.v[q]);
}
#else
struct vf {
  float x[L];
};
inline vf operator+(vf a, vf b) {
  for (int l = 0; l < L; ++l) a.x[l] += b.x[l];
  return a;
}
inline vf operator-(vf a, vf b) {
  for (int l = 0; l < L; ++l) a.x[l] -= b.x[l];
  return a;
}
inline vf operator*(float s, vf a) {
  for (int l = 0; l < L; ++l) a.x[l] *= s;
  return a;
}
inline vf neg(vf a) {
  for (int l = 0; l < L; ++l) a.x[l] = -a.x[l];
  return a;
}
inline vf splat(float s) {
  vf a;
  for (int l = 0; l < L; ++l) a.x[l] = s;
  return a;
}
inline vf load(const float* p) {
  vf a;
  for (int l = 0; l < L; ++l) a.x[l] = p[l];
  return a;
}
inline void store(float* p, vf a) {
  for (int l = 0; l < L; ++l) p[l] = a.x[l];
}
#endif

// 1-D transforms.
inline void bt6(vf d0, vf d1, vf d2, vf d3, vf d4, vf d5, vf r[6]) {
  r[0] = 4.f * d0 - 5.f * d2 + d4;
  r[1] = d3 + d4 - 4.f * (d1 + d2);
  r[2] = 4.f * (d1 - d2) - d3 + d4;
  r[3] = 2.f * (d3 - d1) - d2 + d4;
  r[4] = 2.f * (d1 - d3) - d2 + d4;
  r[5] = 4.f * d1 - 5.f * d3 + d5;
}
inline void at4(vf e0, vf e1, vf e2, vf e3, vf e4, vf e5, vf r[4]) {
  const vf s12 = e1 + e2, d12 = e1 - e2, s34 = e3 + e4, d34 = e3 - e4;
  r[0] = e0 + s12 + s34;
  r[1] = d12 + 2.f * d34;
  r[2] = s12 + 4.f * s34;
  r[3] = d12 + 8.f * d34 + e5;
}
inline void g6(vf g0, vf g1, vf g2, vf r[6]) {
  r[0] = 0.25f * g0;
  r[1] = neg((1.f / 6.f) * (g0 + g1 + g2));
  r[2] = neg((1.f / 6.f) * (g0 - g1 + g2));
  r[3] = (1.f / 24.f) * g0 + (1.f / 12.f) * g1 + (1.f / 6.f) * g2;
  r[4] = (1.f / 24.f) * g0 - (1.f / 12.f) * g1 + (1.f / 6.f) * g2;
  r[5] = g2;
}

// Second half of V = B^T d B: S[i][b] holds (d B)[i][b] (row transforms); applies B^T down the columns and stores
// lanes [0, lanes) of V[a][b] at dst[(6a + b) * xs].
inline void input_columns(const float (*S)[6][L], float* dst, int64_t xs, int lanes) {
  for (int b = 0; b < 6; ++b) {
    vf r[6];
    bt6(load(S[0][b]), load(S[1][b]), load(S[2][b]), load(S[3][b]), load(S[4][b]), load(S[5][b]), r);
    for (int a = 0; a < 6; ++a) {
      float* p = dst + (int64_t)(6 * a + b) * xs;
      if (lanes == L) {
        store(p, r[a]);
      } else {
        float tmp[L];
        store(tmp, r[a]);
        for (int l = 0; l < lanes; ++l) p[l] = tmp[l];
      }
    }
  }
}

}  // namespace

void wino_input_tiles(const float* p, int64_t wp, const int32_t* off, int lanes, float* dst, int64_t xs) {
  // Row by row (few live registers): S[i] = (row i of d) . B, then the column transform.
  alignas(64) float S[6][6][L];
#if SDN_ISA_avx512
  // Fast path: 16 lanes in two runs of 8 consecutive tiles (each run inside one tile row): contiguous loads,
  // then de-interleave the stride-4 columns with permutes. The caller guarantees 36 floats of slack per run.
  const bool runs = lanes == L && off[7] == off[0] + 28 && off[15] == off[8] + 28 && off[1] == off[0] + 4 &&
                    off[9] == off[8] + 4;
  if (runs) {
    const float* h0 = p + off[0];
    const float* h1 = p + off[8];
    __m512i idx[4];
    for (int j = 0; j < 4; ++j)
      idx[j] = _mm512_setr_epi32(j, 4 + j, 8 + j, 12 + j, 16 + j, 20 + j, 24 + j, 28 + j, j, 4 + j, 8 + j, 12 + j,
                                 16 + j, 20 + j, 24 + j, 28 + j);
    for (int i = 0; i < 6; ++i) {
      const float* r0 = h0 + i * wp;
      const float* r1 = h1 + i * wp;
      const __m512 a0 = _mm512_loadu_ps(r0), a1 = _mm512_loadu_ps(r0 + 16);
      const __m512 b0 = _mm512_loadu_ps(r1), b1 = _mm512_loadu_ps(r1 + 16);
      const __m512 c0 = _mm512_loadu_ps(r0 + 4), c1 = _mm512_loadu_ps(r0 + 20);
      const __m512 e0 = _mm512_loadu_ps(r1 + 4), e1 = _mm512_loadu_ps(r1 + 20);
      vf d[6];
      for (int j = 0; j < 4; ++j)
        d[j].v = _mm512_mask_mov_ps(_mm512_permutex2var_ps(a0, idx[j], a1), (__mmask16)0xFF00,
                                    _mm512_permutex2var_ps(b0, idx[j], b1));
      for (int j = 4; j < 6; ++j)
        d[j].v = _mm512_mask_mov_ps(_mm512_permutex2var_ps(c0, idx[j - 4], c1), (__mmask16)0xFF00,
                                    _mm512_permutex2var_ps(e0, idx[j - 4], e1));
      vf r[6];
      bt6(d[0], d[1], d[2], d[3], d[4], d[5], r);
      for (int b = 0; b < 6; ++b) store(S[i][b], r[b]);
    }
    input_columns(S, dst, xs, lanes);
    return;
  }
#endif
  int32_t o[L];
  for (int l = 0; l < L; ++l) o[l] = off[l < lanes ? l : 0];
  for (int i = 0; i < 6; ++i) {
    vf d[6];
    for (int j = 0; j < 6; ++j) {
      float tmp[L];
      for (int l = 0; l < L; ++l) tmp[l] = p[o[l] + i * wp + j];
      d[j] = load(tmp);
    }
    vf r[6];
    bt6(d[0], d[1], d[2], d[3], d[4], d[5], r);
    for (int b = 0; b < 6; ++b) store(S[i][b], r[b]);
  }
  input_columns(S, dst, xs, lanes);
}

void wino_output_tiles(const float* m, int64_t xs, float bias, float* out, float* const* dst_half, int64_t ldy) {
  alignas(64) float Tb[6][4][L];  // (M A)[a][j]
  for (int a = 0; a < 6; ++a) {
    const float* r = m + (int64_t)(6 * a) * xs;
    vf t[4];
    at4(load(r), load(r + xs), load(r + 2 * xs), load(r + 3 * xs), load(r + 4 * xs), load(r + 5 * xs), t);
    for (int j = 0; j < 4; ++j) store(Tb[a][j], t[j]);
  }
  const vf bv = splat(bias);
  vf o[4][4];  // o[i][j]
  for (int j = 0; j < 4; ++j) {
    vf r[4];
    at4(load(Tb[0][j]), load(Tb[1][j]), load(Tb[2][j]), load(Tb[3][j]), load(Tb[4][j]), load(Tb[5][j]), r);
    for (int i = 0; i < 4; ++i) o[i][j] = r[i] + bv;
  }
  for (int h = 0; h < 2; ++h) {
    float* y = dst_half[h];
    if (!y) {
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) store(out + (i * 4 + j) * L, o[i][j]);
      continue;
    }
#if SDN_ISA_avx512
    // 8 tiles side by side: row i of the output gets o[i][j][8h + l] at 4l + j (32 contiguous floats).
    const int b = 8 * h;
    const __m512i ilv = _mm512_setr_epi32(b, 16 + b, b + 1, 17 + b, b + 2, 18 + b, b + 3, 19 + b, b + 4, 20 + b,
                                          b + 5, 21 + b, b + 6, 22 + b, b + 7, 23 + b);
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    for (int i = 0; i < 4; ++i) {
      const __m512d s01 = _mm512_castps_pd(_mm512_permutex2var_ps(o[i][0].v, ilv, o[i][1].v));
      const __m512d s23 = _mm512_castps_pd(_mm512_permutex2var_ps(o[i][2].v, ilv, o[i][3].v));
      _mm512_storeu_ps(y + i * ldy, _mm512_castpd_ps(_mm512_permutex2var_pd(s01, lo, s23)));
      _mm512_storeu_ps(y + i * ldy + 16, _mm512_castpd_ps(_mm512_permutex2var_pd(s01, hi, s23)));
    }
#else
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        float tmp[L];
        store(tmp, o[i][j]);
        for (int l = 0; l < 8; ++l) y[i * ldy + 4 * l + j] = tmp[8 * h + l];
      }
#endif
  }
}

void wino_weight_transform(const float* g, int64_t n, float* dst, int64_t xs) {
  for (int64_t c0 = 0; c0 < n; c0 += L) {
    const int cnt = n - c0 >= L ? L : (int)(n - c0);
    vf k[9];
#if SDN_ISA_avx512
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(9));
    const __mmask16 m = cnt == L ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1u);
    for (int e = 0; e < 9; ++e)
      k[e].v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, g + c0 * 9 + e, 4);
#else
    for (int e = 0; e < 9; ++e) {
      float tmp[L];
      for (int l = 0; l < L; ++l) tmp[l] = l < cnt ? g[(c0 + l) * 9 + e] : 0.f;
      k[e] = load(tmp);
    }
#endif
    vf tmp[6][3];  // tmp[a][j] = sum_i G[a][i] g[i][j]
    for (int j = 0; j < 3; ++j) {
      vf r[6];
      g6(k[j], k[3 + j], k[6 + j], r);
      for (int a = 0; a < 6; ++a) tmp[a][j] = r[a];
    }
    for (int a = 0; a < 6; ++a) {
      vf r[6];
      g6(tmp[a][0], tmp[a][1], tmp[a][2], r);
      for (int b = 0; b < 6; ++b) {
        float* p = dst + (int64_t)(6 * a + b) * xs + c0;
        if (cnt == L) {
          store(p, r[b]);
        } else {
          float t2[L];
          store(t2, r[b]);
          for (int l = 0; l < cnt; ++l) p[l] = t2[l];
        }
      }
    }
  }
}

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
