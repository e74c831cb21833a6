// Flash attention: one invocation per query row, 64 rows of one (batch, head) per workgroup; keys and values
// stream through shared memory 8 at a time with an online softmax, so the score matrix is never stored.
// a0 = q [B, Tq, H*D], a1 = k [B, Tk, H*D], a2 = v, a3 = out [B, Tq, H*D] (all contiguous)
// u0 = Tq, u1 = Tk, u2 = H, u3 = D (<= MAXD: 256, or 512 in the attention_d512 module), u4 = causal, u5 = scale (float bits)
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 64) in;

#ifdef WIDE
#define MAXD 512u
#define KT 4u  // keeps the key/value tiles at 16 KiB of shared memory, the minimum every device offers
#else
#define MAXD 256u
#define KT 8u
#endif
shared float Ks[KT * MAXD];
shared float Vs[KT * MAXD];

void main() {
  uint Tq = pc.u0, Tk = pc.u1, H = pc.u2, D = pc.u3;
  bool causal = pc.u4 != 0u;
  float scale = uintBitsToFloat(pc.u5);
  uint bh = gl_WorkGroupID.y;
  uint b = bh / H, h = bh % H;
  uint HD = H * D;
  uint t = gl_LocalInvocationID.x;
  uint row = gl_WorkGroupID.x * 64u + t;
  bool live = row < Tq;
  FBuf Q = FBuf(pc.a0), Kb = FBuf(pc.a1), Vb = FBuf(pc.a2), O = FBuf(pc.a3);
  float q[MAXD];
  float acc[MAXD];
  uint qbase = (b * Tq + (live ? row : 0u)) * HD + h * D;
  for (uint d = 0u; d < D; ++d) {
    q[d] = live ? Q.v[qbase + d] * scale : 0.0;
    acc[d] = 0.0;
  }
  float m = -3.402823466e38, l = 0.0;
  uint last_row = min(Tq, gl_WorkGroupID.x * 64u + 64u) - 1u;
  uint kend = causal ? min(Tk, last_row + 1u) : Tk;
  for (uint j0 = 0u; j0 < kend; j0 += KT) {
    uint nk = min(KT, kend - j0);
    for (uint e = t; e < nk * D; e += 64u) {
      uint jj = e / D, d = e % D;
      uint src = (b * Tk + j0 + jj) * HD + h * D + d;
      Ks[jj * MAXD + d] = Kb.v[src];
      Vs[jj * MAXD + d] = Vb.v[src];
    }
    barrier();
    if (live) {
      for (uint jj = 0u; jj < nk; ++jj) {
        if (causal && j0 + jj > row) break;
        float s = 0.0;
        for (uint d = 0u; d < D; ++d) s += q[d] * Ks[jj * MAXD + d];
        float mn = max(m, s);
        float corr = exp(m - mn);
        float p = exp(s - mn);
        l = l * corr + p;
        for (uint d = 0u; d < D; ++d) acc[d] = acc[d] * corr + p * Vs[jj * MAXD + d];
        m = mn;
      }
    }
    barrier();
  }
  if (live) {
    float inv = 1.0 / l;
    for (uint d = 0u; d < D; ++d) O.v[qbase + d] = acc[d] * inv;
  }
}
