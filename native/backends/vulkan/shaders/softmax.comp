// Softmax over rows of length u0 (u1 rows): one workgroup per row. a0 = x, a3 = out.
// Row max and sum: reduce.glsl (shared-memory tree, or subgroup operations in the softmax_sg module).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"

void main() {
  uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (row >= pc.u1) return;  // uniform per workgroup
  uint C = pc.u0;
  uint t = gl_LocalInvocationID.x;
  FBuf x = FBuf(pc.a0);
  FBuf o = FBuf(pc.a3);
  uint base = row * C;
  float m = -3.402823466e38;
  for (uint e = t; e < C; e += 256u) m = max(m, x.v[base + e]);
  m = reduce_max(m);
  float sum = 0.0;
  for (uint e = t; e < C; e += 256u) sum += exp(x.v[base + e] - m);
  float inv = 1.0 / reduce_sum(sum);
  for (uint e = t; e < C; e += 256u) o.v[base + e] = exp(x.v[base + e] - m) * inv;
}
