// Fused attention kernels (compiled once per ISA). See attention_kernels.h.
#include "backends/cpu/simd/attention_kernels.h"

#include <cmath>

#include "backends/cpu/simd/vec.h"

namespace sdn {
namespace cpu {
namespace SDN_ISA {

namespace {
constexpr int kKeyTile = 64;  // keys per tile
constexpr int kPlainRows = 32;
}  // namespace

#if !SDN_VEC
int attn_rows_per_block(int) { return kPlainRows; }

size_t attn_scratch_floats(int d) {
  return (size_t)kPlainRows * kKeyTile + (size_t)kPlainRows * d + 2 * kPlainRows + 64;
}

// Plain C++ twin: the same online-softmax algorithm with straightforward loops.
void attn_block(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  const int d = a.d;
  const int rows = (int)(i1 - i0);
  float* s = scratch;                               // [rows][kKeyTile]
  float* acc = s + (size_t)kPlainRows * kKeyTile;   // [rows][d]
  float* mrow = acc + (size_t)kPlainRows * d;       // running max
  float* lrow = mrow + kPlainRows;                  // running sum
  for (int r = 0; r < rows; ++r) {
    mrow[r] = -INFINITY;
    lrow[r] = 0.f;
    for (int c = 0; c < d; ++c) acc[(size_t)r * d + c] = 0.f;
  }
  int64_t kend = a.causal ? (i1 < a.tk ? i1 : a.tk) : a.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kKeyTile) {
    int jn = (int)(kend - j0 < kKeyTile ? kend - j0 : kKeyTile);
    for (int r = 0; r < rows; ++r) {
      const float* qi = a.q + (i0 + r) * a.q_stride;
      float* sr = s + (size_t)r * kKeyTile;
      for (int jj = 0; jj < jn; ++jj) {
        int64_t j = j0 + jj;
        if (a.causal && j > i0 + r) {
          sr[jj] = -INFINITY;
          continue;
        }
        const float* kj = a.k + j * a.k_stride;
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot += qi[c] * kj[c];
        sr[jj] = dot * a.scale;
      }
      float mx = -INFINITY;
      for (int jj = 0; jj < jn; ++jj) mx = sr[jj] > mx ? sr[jj] : mx;
      if (mx == -INFINITY) continue;  // every key of this tile is masked for this row
      float mnew = mrow[r] > mx ? mrow[r] : mx;
      float alpha = std::exp(mrow[r] - mnew);  // 0 on the first tile (mrow = -inf)
      mrow[r] = mnew;
      float* ar = acc + (size_t)r * d;
      float sum = 0.f;
      for (int c = 0; c < d; ++c) ar[c] *= alpha;
      for (int jj = 0; jj < jn; ++jj) {
        float p = std::exp(sr[jj] - mnew);
        sum += p;
        if (p == 0.f) continue;
        const float* vj = a.v + (j0 + jj) * a.v_stride;
        for (int c = 0; c < d; ++c) ar[c] += p * vj[c];
      }
      lrow[r] = lrow[r] * alpha + sum;
    }
  }
  for (int r = 0; r < rows; ++r) {
    float inv = lrow[r] > 0 ? 1.f / lrow[r] : 0.f;
    float* out = a.o + (i0 + r) * a.o_stride;
    for (int c = 0; c < d; ++c) out[c] = acc[(size_t)r * d + c] * inv;
  }
}
#else
// Vector path: filled in below (step 2); for now the same plain algorithm.
int attn_rows_per_block(int) { return kPlainRows; }

size_t attn_scratch_floats(int d) {
  return (size_t)kPlainRows * kKeyTile + (size_t)kPlainRows * d + 2 * kPlainRows + 64;
}

void attn_block(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  const int d = a.d;
  const int rows = (int)(i1 - i0);
  float* s = scratch;
  float* acc = s + (size_t)kPlainRows * kKeyTile;
  float* mrow = acc + (size_t)kPlainRows * d;
  float* lrow = mrow + kPlainRows;
  for (int r = 0; r < rows; ++r) {
    mrow[r] = -INFINITY;
    lrow[r] = 0.f;
    for (int c = 0; c < d; ++c) acc[(size_t)r * d + c] = 0.f;
  }
  int64_t kend = a.causal ? (i1 < a.tk ? i1 : a.tk) : a.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kKeyTile) {
    int jn = (int)(kend - j0 < kKeyTile ? kend - j0 : kKeyTile);
    for (int r = 0; r < rows; ++r) {
      const float* qi = a.q + (i0 + r) * a.q_stride;
      float* sr = s + (size_t)r * kKeyTile;
      for (int jj = 0; jj < jn; ++jj) {
        int64_t j = j0 + jj;
        if (a.causal && j > i0 + r) {
          sr[jj] = -INFINITY;
          continue;
        }
        const float* kj = a.k + j * a.k_stride;
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot += qi[c] * kj[c];
        sr[jj] = dot * a.scale;
      }
      float mx = -INFINITY;
      for (int jj = 0; jj < jn; ++jj) mx = sr[jj] > mx ? sr[jj] : mx;
      if (mx == -INFINITY) continue;
      float mnew = mrow[r] > mx ? mrow[r] : mx;
      float alpha = std::exp(mrow[r] - mnew);
      mrow[r] = mnew;
      float* ar = acc + (size_t)r * d;
      float sum = 0.f;
      for (int c = 0; c < d; ++c) ar[c] *= alpha;
      for (int jj = 0; jj < jn; ++jj) {
        float p = std::exp(sr[jj] - mnew);
        sum += p;
        if (p == 0.f) continue;
        const float* vj = a.v + (j0 + jj) * a.v_stride;
        for (int c = 0; c < d; ++c) ar[c] += p * vj[c];
      }
      lrow[r] = lrow[r] * alpha + sum;
    }
  }
  for (int r = 0; r < rows; ++r) {
    float inv = lrow[r] > 0 ? 1.f / lrow[r] : 0.f;
    float* out = a.o + (i0 + r) * a.o_stride;
    for (int c = 0; c < d; ++c) out[c] = acc[(size_t)r * d + c] * inv;
  }
}
#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
