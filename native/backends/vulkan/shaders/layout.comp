// Layout operations (one output element per invocation). a0 = x (a), a1 = b (concat), a3 = out; u0 = n; MODE = specialization constant 0.
//  mode 0 concat: u2 = inner elements of a per outer index, u3 = of b
//  mode 1 upsample nearest 2x of [B*C, H, W]: u2 = H, u3 = W
//  mode 2 nchw -> nlc: u2 = C, u3 = H*W   (out [B, HW, C])
//  mode 3 nlc -> nchw: u2 = C, u3 = H*W   (out [B, C, HW])
//  mode 4 pad [B*C, H, W] -> [B*C, H+t+b, W+l+r]: u2 = H, u3 = W, u4 = left, u5 = top, u6 = out H, u7 = out W
//  mode 5 copy
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0u;

void item(uint i) {
  FBuf a = FBuf(pc.a0);
  FBuf o = FBuf(pc.a3);
  const uint mode = MODE;
  if (mode == 0u) {
    uint ia = pc.u2, ib = pc.u3, tot = ia + ib;
    uint outer = i / tot, j = i % tot;
    if (j < ia) o.v[i] = a.v[outer * ia + j];
    else o.v[i] = FBuf(pc.a1).v[outer * ib + (j - ia)];
  } else if (mode == 1u) {
    uint H = pc.u2, W = pc.u3, OW = 2u * W;
    uint ox = i % OW, r = i / OW;
    uint oy = r % (2u * H), p = r / (2u * H);
    o.v[i] = a.v[(p * H + oy / 2u) * W + ox / 2u];
  } else if (mode == 2u) {
    uint C = pc.u2, HW = pc.u3;
    uint c = i % C, r = i / C;
    uint s = r % HW, b = r / HW;
    o.v[i] = a.v[(b * C + c) * HW + s];
  } else if (mode == 3u) {
    uint C = pc.u2, HW = pc.u3;
    uint s = i % HW, r = i / HW;
    uint c = r % C, b = r / C;
    o.v[i] = a.v[(b * HW + s) * C + c];
  } else if (mode == 4u) {
    uint H = pc.u2, W = pc.u3, L = pc.u4, T = pc.u5, OH = pc.u6, OW = pc.u7;
    uint ox = i % OW, r = i / OW;
    uint oy = r % OH, p = r / OH;
    int x = int(ox) - int(L), y = int(oy) - int(T);
    o.v[i] = (x >= 0 && y >= 0 && x < int(W) && y < int(H)) ? a.v[(p * H + uint(y)) * W + uint(x)] : 0.0;
  } else {
    o.v[i] = a.v[i];
  }
}

void main() {
  const uint step = total_invocations();
  for (uint i = flat_index(); i < pc.u0; i += step) item(i);
}
