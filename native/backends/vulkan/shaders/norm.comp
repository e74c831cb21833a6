// GroupNorm / LayerNorm: one workgroup per normalised group (row). Two passes over the group (mean, then the mean
// of squared deviations, as the CPU reference does), then the affine (+ SiLU) write.
// a0 = x, a1 = gamma (or 0), a2 = beta (or 0), a3 = out
// u0 = group size (elements), u1 = S (elements per channel), u2 = channels per group, u3 = groups per sample,
// u4 = has gamma, u5 = has beta, u6 = silu, u7 = eps (float bits). Workgroup g covers x[g*size, (g+1)*size).
// LayerNorm: size = C, S = 1, cpg = C, groups = 1. u8 = number of groups (workgroups past it return).
// Reductions: reduce.glsl (shared-memory tree, or subgroup operations in the norm_sg module).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
#include "reduce.glsl"

void main() {
  uint g = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
  if (g >= pc.u8) return;  // uniform per workgroup
  uint size = pc.u0;
  uint t = gl_LocalInvocationID.x;
  FBuf x = FBuf(pc.a0);
  FBuf o = FBuf(pc.a3);
  uint base = g * size;
  float s = 0.0;
  for (uint e = t; e < size; e += 256u) s += x.v[base + e];
  float mean = reduce_sum(s) / float(size);
  float q = 0.0;
  for (uint e = t; e < size; e += 256u) {
    float d = x.v[base + e] - mean;
    q += d * d;
  }
  float var = reduce_sum(q) / float(size);
  float rstd = 1.0 / sqrt(var + uintBitsToFloat(pc.u7));
  uint c0 = (g % pc.u3) * pc.u2;
  for (uint e = t; e < size; e += 256u) {
    uint c = c0 + e / pc.u1;
    float a = rstd * (pc.u4 != 0u ? FBuf(pc.a1).v[c] : 1.0);
    float y = (x.v[base + e] - mean) * a + (pc.u5 != 0u ? FBuf(pc.a2).v[c] : 0.0);
    if (pc.u6 != 0u) y = y * sigmoid_f(y);
    o.v[base + e] = y;
  }
}
