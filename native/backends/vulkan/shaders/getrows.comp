// Embedding lookup: out[i, d] = table[ids[i], d] (table in its stored type). a0 = table, a1 = ids (int32),
// a3 = out; u0 = n*D, u1 = D.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dequant.glsl"
layout(local_size_x = 256) in;

void item(uint i) {
  uint D = pc.u1;
  uint r = i / D, d = i % D;
  uint id = UBuf(pc.a1).v[r];
  FBuf(pc.a3).v[i] = wdec(UBuf(pc.a0), id * row_bytes_for(D), d);
}

void main() {
  const uint step = total_invocations();
  for (uint i = flat_index(); i < pc.u0; i += step) item(i);
}
