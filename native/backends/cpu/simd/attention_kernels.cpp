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
// Vector path (AVX-512: 16 lanes, AVX2: 8 lanes; see vec.h). Queries live in vector lanes, keys are broadcast:
//
// Per block of kMq queries: Q^T (pre-multiplied by the scale) is packed once into qt [D][kMq] (zero for queries
// past the end); the output accumulator ob [kMq][Dp] (Dp = D rounded up to the vector width) stays in scratch.
// For each tile of up to kNK keys:
//   1. S^T [keys][kMq] = K Q^T: an R-keys x kNV-query-vectors register block; K rows are read in place and
//      broadcast, so K is never repacked or transposed;
//   2. online softmax, vertical over keys (no horizontal reductions): m' = max(m, max_j S), alpha = e^(m - m'),
//      P = e^(S - m'), l = l alpha + sum_j P, all as vectors over the block's queries;
//   3. ob = ob * alpha + P V: an R-queries x NV-feature-vectors register block, V rows read in place (masked
//      load for the last vector when D is not a multiple of the width).
// Finally out = ob / l.
using namespace vec;

namespace {
#if SDN_ISA_avx512
constexpr int kR = 6;   // broadcast rows per register block
#else
constexpr int kR = 3;
#endif
constexpr int kNV = 4;        // vectors per register block
constexpr int kMq = kNV * W;  // queries per block (64 on AVX-512, 32 on AVX2)
constexpr int kNK = 64;       // keys per tile
constexpr float kNoMax = -1e30f;  // running max before any visible key (finite, so e^(m - m') is 0, not NaN)

inline int pad_w(int d) { return (d + W - 1) / W * W; }

// s[r][0..kMq) = sum_d k[r][d] * qt[d][0..kMq) for R key rows
template <int R>
inline void qk_block(const float* k, int64_t kstride, const float* qt, int D, float* s) {
  F acc[R][kNV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kNV; ++v) acc[r][v] = zero();
  for (int d = 0; d < D; ++d) {
    F qv[kNV];
    for (int v = 0; v < kNV; ++v) qv[v] = load(qt + (size_t)d * kMq + v * W);
    for (int r = 0; r < R; ++r) {
      F kb = set1(k[r * kstride + d]);
      for (int v = 0; v < kNV; ++v) acc[r][v] = fmadd(kb, qv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kNV; ++v) store(s + (size_t)r * kMq + v * W, acc[r][v]);
}

template <int R>
void qk_dispatch(int r, const float* k, int64_t kstride, const float* qt, int D, float* s) {
  if (r == R) return qk_block<R>(k, kstride, qt, D, s);
  if constexpr (R > 1) qk_dispatch<R - 1>(r, k, kstride, qt, D, s);
}

// o[r][0..NV*W) = o[r] * alpha[r] + sum_j p[j][r] * v[j][0..NV*W) for R query rows; `tail` lanes valid in the
// last vector of v (W when full).
template <int R, int NV>
inline void pv_block(const float* p, int jn, const float* v, int64_t vstride, int tail, float* o, int Dp,
                     const float* alpha) {
  F acc[R][NV];
  for (int r = 0; r < R; ++r) {
    F a = set1(alpha[r]);
    for (int c = 0; c < NV; ++c) acc[r][c] = mul(load(o + (size_t)r * Dp + c * W), a);
  }
  for (int j = 0; j < jn; ++j) {
    const float* vj = v + j * vstride;
    F vv[NV];
    for (int c = 0; c < NV - 1; ++c) vv[c] = load(vj + c * W);
    vv[NV - 1] = tail == W ? load(vj + (NV - 1) * W) : load_n(vj + (NV - 1) * W, tail);
    const float* pj = p + (size_t)j * kMq;
    for (int r = 0; r < R; ++r) {
      F pb = set1(pj[r]);
      for (int c = 0; c < NV; ++c) acc[r][c] = fmadd(pb, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) store(o + (size_t)r * Dp + c * W, acc[r][c]);
}

template <int R>
inline void pv_rows(int nv, const float* p, int jn, const float* v, int64_t vstride, int tail, float* o, int Dp,
                    const float* alpha) {
  switch (nv) {
    case 1: pv_block<R, 1>(p, jn, v, vstride, tail, o, Dp, alpha); break;
    case 2: pv_block<R, 2>(p, jn, v, vstride, tail, o, Dp, alpha); break;
    case 3: pv_block<R, 3>(p, jn, v, vstride, tail, o, Dp, alpha); break;
    default: pv_block<R, 4>(p, jn, v, vstride, tail, o, Dp, alpha); break;
  }
}

template <int R>
void pv_dispatch(int r, int nv, const float* p, int jn, const float* v, int64_t vstride, int tail, float* o, int Dp,
                 const float* alpha) {
  if (r == R) return pv_rows<R>(nv, p, jn, v, vstride, tail, o, Dp, alpha);
  if constexpr (R > 1) pv_dispatch<R - 1>(r, nv, p, jn, v, vstride, tail, o, Dp, alpha);
}

struct Layout {
  int Dp;
  size_t qt, ob, s, m, l, alpha, total;
};

Layout layout(int d) {
  Layout L;
  L.Dp = pad_w(d);
  size_t off = 0;
  auto take = [&](size_t n) {
    size_t o = off;
    off += (n + 15) / 16 * 16;  // keep every buffer 64-byte aligned
    return o;
  };
  L.qt = take((size_t)d * kMq);
  L.ob = take((size_t)kMq * L.Dp);
  L.s = take((size_t)kNK * kMq);
  L.m = take(kMq);
  L.l = take(kMq);
  L.alpha = take(kMq);
  L.total = off;
  return L;
}
}  // namespace

int attn_rows_per_block(int) { return kMq; }

size_t attn_scratch_floats(int d) { return layout(d).total; }

void attn_block(const AttnArgs& a, int64_t i0, int64_t i1, float* scratch) {
  const int D = a.d;
  const Layout L = layout(D);
  const int Dp = L.Dp;
  const int rows = (int)(i1 - i0);
  float* qt = scratch + L.qt;
  float* ob = scratch + L.ob;
  float* sb = scratch + L.s;
  float* mrow = scratch + L.m;
  float* lrow = scratch + L.l;
  float* alpha = scratch + L.alpha;

  // Q^T block, pre-scaled (zero columns for rows past the end); accumulators cleared.
  for (int r = 0; r < kMq; ++r) {
    if (r < rows) {
      const float* src = a.q + (i0 + r) * a.q_stride;
      for (int d = 0; d < D; ++d) qt[(size_t)d * kMq + r] = src[d] * a.scale;
    } else {
      for (int d = 0; d < D; ++d) qt[(size_t)d * kMq + r] = 0.f;
    }
  }
  for (size_t i = 0; i < (size_t)kMq * Dp; i += W) store(ob + i, zero());
  for (int v = 0; v < kNV; ++v) {
    store(mrow + v * W, set1(kNoMax));
    store(lrow + v * W, zero());
  }

  const int nvec_d = Dp / W;
  const int nch = (nvec_d + kNV - 1) / kNV;
  const int dtail = D - (nvec_d - 1) * W;  // valid lanes in the last feature vector
  const int64_t kend = a.causal ? (i1 < a.tk ? i1 : a.tk) : a.tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kNK) {
    const int jn = (int)(kend - j0 < kNK ? kend - j0 : kNK);
    // S^T = K Q^T
    for (int r0 = 0; r0 < jn; r0 += kR) {
      int rr = jn - r0 < kR ? jn - r0 : kR;
      qk_dispatch<kR>(rr, a.k + (j0 + r0) * a.k_stride, a.k_stride, qt, D, sb + (size_t)r0 * kMq);
    }
    if (a.causal && j0 + jn - 1 > i0) {  // key j is hidden from query i when j > i
      for (int jj = 0; jj < jn; ++jj) {
        int64_t lim = j0 + jj - i0;  // queries r < lim are masked
        float* sr = sb + (size_t)jj * kMq;
        for (int64_t r = 0; r < lim && r < kMq; ++r) sr[r] = -INFINITY;
      }
    }
    // online softmax, vertical over the tile's keys
    for (int v = 0; v < kNV; ++v) {
      F mx = load(sb + v * W);
      for (int jj = 1; jj < jn; ++jj) mx = max(mx, load(sb + (size_t)jj * kMq + v * W));
      F mold = load(mrow + v * W);
      F mnew = max(mold, mx);
      F al = exp(sub(mold, mnew));
      F sum = zero();
      for (int jj = 0; jj < jn; ++jj) {
        float* sp = sb + (size_t)jj * kMq + v * W;
        F p = exp(sub(load(sp), mnew));
        store(sp, p);
        sum = add(sum, p);
      }
      store(mrow + v * W, mnew);
      store(alpha + v * W, al);
      store(lrow + v * W, fmadd(load(lrow + v * W), al, sum));
    }
    // ob = ob * alpha + P V
    for (int r0 = 0; r0 < rows; r0 += kR) {
      int rr = rows - r0 < kR ? rows - r0 : kR;
      int c0 = 0;
      for (int ch = 0; ch < nch; ++ch) {
        int nv = (nvec_d - c0 / W + (nch - ch) - 1) / (nch - ch);
        int tail = c0 / W + nv == nvec_d ? dtail : W;
        pv_dispatch<kR>(rr, nv, sb + r0, jn, a.v + j0 * a.v_stride + c0, a.v_stride, tail,
                        ob + (size_t)r0 * Dp + c0, Dp, alpha + r0);
        c0 += nv * W;
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    float inv = lrow[r] > 0 ? 1.f / lrow[r] : 0.f;
    F iv = set1(inv);
    const float* o = ob + (size_t)r * Dp;
    float* out = a.o + (i0 + r) * a.o_stride;
    int c = 0;
    for (; c + W <= D; c += W) store(out + c, mul(load(o + c), iv));
    if (c < D) store_n(out + c, mul(load(o + c), iv), D - c);
  }
}
#endif

}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
