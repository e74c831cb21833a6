// Winograd F(4x4, 3x3) transforms (see wino_kernels.h). Plain C++ over lane arrays: the loops over lanes are
// vectorised by the compiler for the ISA this copy is built for. No STL / header inline functions (see
// gemm_kernels.cpp for why).
#include "backends/cpu/simd/wino_kernels.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

namespace {
constexpr int L = 16;
}

void wino_input_tiles(const float* p, int64_t wp, const int32_t* off, int lanes, float* dst, int64_t xs) {
  float d[6][6][L];
  int32_t o[L];
  for (int l = 0; l < L; ++l) o[l] = off[l < lanes ? l : 0];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j)
      for (int l = 0; l < L; ++l) d[i][j][l] = p[o[l] + i * wp + j];
  // Columns: t[a][j] = sum_i BT[a][i] d[i][j].
  float t[6][6][L];
  for (int j = 0; j < 6; ++j)
    for (int l = 0; l < L; ++l) {
      const float d0 = d[0][j][l], d1 = d[1][j][l], d2 = d[2][j][l], d3 = d[3][j][l], d4 = d[4][j][l],
                  d5 = d[5][j][l];
      t[0][j][l] = 4.f * d0 - 5.f * d2 + d4;
      t[1][j][l] = -4.f * (d1 + d2) + d3 + d4;
      t[2][j][l] = 4.f * (d1 - d2) - d3 + d4;
      t[3][j][l] = 2.f * (d3 - d1) - d2 + d4;
      t[4][j][l] = 2.f * (d1 - d3) - d2 + d4;
      t[5][j][l] = 4.f * d1 - 5.f * d3 + d5;
    }
  // Rows: v[a][b] = sum_j t[a][j] BT[b][j].
  for (int a = 0; a < 6; ++a) {
    float* r = dst + (int64_t)(6 * a) * xs;
    for (int l = 0; l < lanes; ++l) {
      const float e0 = t[a][0][l], e1 = t[a][1][l], e2 = t[a][2][l], e3 = t[a][3][l], e4 = t[a][4][l],
                  e5 = t[a][5][l];
      r[0 * xs + l] = 4.f * e0 - 5.f * e2 + e4;
      r[1 * xs + l] = -4.f * (e1 + e2) + e3 + e4;
      r[2 * xs + l] = 4.f * (e1 - e2) - e3 + e4;
      r[3 * xs + l] = 2.f * (e3 - e1) - e2 + e4;
      r[4 * xs + l] = 2.f * (e1 - e3) - e2 + e4;
      r[5 * xs + l] = 4.f * e1 - 5.f * e3 + e5;
    }
  }
}

void wino_output_tiles(const float* m, int64_t xs, int lanes, float bias, float* out) {
  // Rows first: t[a][j] = sum_b M[a][b] AT[j][b].
  float t[6][4][L];
  for (int a = 0; a < 6; ++a) {
    const float* r = m + (int64_t)(6 * a) * xs;
    for (int l = 0; l < L; ++l) {
      const float e0 = r[0 * xs + l], e1 = r[1 * xs + l], e2 = r[2 * xs + l], e3 = r[3 * xs + l],
                  e4 = r[4 * xs + l], e5 = r[5 * xs + l];
      const float s12 = e1 + e2, d12 = e1 - e2, s34 = e3 + e4, d34 = e3 - e4;
      t[a][0][l] = e0 + s12 + s34;
      t[a][1][l] = d12 + 2.f * d34;
      t[a][2][l] = s12 + 4.f * s34;
      t[a][3][l] = d12 + 8.f * d34 + e5;
    }
  }
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < L; ++l) {
      const float e0 = t[0][j][l], e1 = t[1][j][l], e2 = t[2][j][l], e3 = t[3][j][l], e4 = t[4][j][l],
                  e5 = t[5][j][l];
      const float s12 = e1 + e2, d12 = e1 - e2, s34 = e3 + e4, d34 = e3 - e4;
      out[(0 * 4 + j) * L + l] = e0 + s12 + s34 + bias;
      out[(1 * 4 + j) * L + l] = d12 + 2.f * d34 + bias;
      out[(2 * 4 + j) * L + l] = s12 + 4.f * s34 + bias;
      out[(3 * 4 + j) * L + l] = d12 + 8.f * d34 + e5 + bias;
    }
  (void)lanes;
}

void wino_weight_transform(const float* g, int64_t n, float* dst, int64_t xs) {
  for (int64_t c0 = 0; c0 < n; c0 += L) {
    const int cnt = n - c0 >= L ? L : (int)(n - c0);
    float k[9][L];
    for (int e = 0; e < 9; ++e)
      for (int l = 0; l < L; ++l) k[e][l] = l < cnt ? g[(c0 + l) * 9 + e] : 0.f;
    // Columns: tmp[a][j] = sum_i G[a][i] g[i][j].
    float tmp[6][3][L];
    for (int j = 0; j < 3; ++j)
      for (int l = 0; l < L; ++l) {
        const float g0 = k[j][l], g1 = k[3 + j][l], g2 = k[6 + j][l];
        tmp[0][j][l] = 0.25f * g0;
        tmp[1][j][l] = -(g0 + g1 + g2) * (1.f / 6.f);
        tmp[2][j][l] = -(g0 - g1 + g2) * (1.f / 6.f);
        tmp[3][j][l] = g0 * (1.f / 24.f) + g1 * (1.f / 12.f) + g2 * (1.f / 6.f);
        tmp[4][j][l] = g0 * (1.f / 24.f) - g1 * (1.f / 12.f) + g2 * (1.f / 6.f);
        tmp[5][j][l] = g2;
      }
    float u[36][L];
    for (int a = 0; a < 6; ++a)
      for (int l = 0; l < L; ++l) {
        const float g0 = tmp[a][0][l], g1 = tmp[a][1][l], g2 = tmp[a][2][l];
        u[6 * a + 0][l] = 0.25f * g0;
        u[6 * a + 1][l] = -(g0 + g1 + g2) * (1.f / 6.f);
        u[6 * a + 2][l] = -(g0 - g1 + g2) * (1.f / 6.f);
        u[6 * a + 3][l] = g0 * (1.f / 24.f) + g1 * (1.f / 12.f) + g2 * (1.f / 6.f);
        u[6 * a + 4][l] = g0 * (1.f / 24.f) - g1 * (1.f / 12.f) + g2 * (1.f / 6.f);
        u[6 * a + 5][l] = g2;
      }
    for (int xi = 0; xi < 36; ++xi) {
      float* r = dst + (int64_t)xi * xs + c0;
      if (cnt == L) {
        for (int l = 0; l < L; ++l) r[l] = u[xi][l];
      } else {
        for (int l = 0; l < cnt; ++l) r[l] = u[xi][l];
      }
    }
  }
}

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
