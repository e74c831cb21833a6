// Workgroup-wide sum and max of one float per invocation, for 256-invocation workgroups (norm.comp, softmax.comp).
// Every invocation gets the result; the functions end with a barrier, so they can be called again at once.
//  * plain: a shared-memory tree (8 halving steps, a barrier each).
//  * SUBGROUP (the device reports subgroup BASIC + ARITHMETIC in compute shaders): subgroupAdd/subgroupMax within
//    each subgroup, one shared slot per subgroup, then every subgroup reduces the slots itself (its n active lanes
//    take slots r, r + n, ..., r = the lane's rank among them, so a partial subgroup is handled too). Two barriers,
//    any subgroup size (lavapipe 8, NVIDIA 32, AMD 64/32, Intel 8-32; one slot per invocation is enough even for a
//    subgroup size of 1).
#ifdef SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
shared float red[256];

float reduce_sum(float v) {
  float s = subgroupAdd(v);
  if (subgroupElect()) red[gl_SubgroupID] = s;
  barrier();
  float r = 0.0;
  uint n = subgroupAdd(1u), rank = subgroupExclusiveAdd(1u);
  for (uint i = rank; i < gl_NumSubgroups; i += n) r += red[i];
  r = subgroupAdd(r);
  barrier();
  return r;
}

float reduce_max(float v) {
  float s = subgroupMax(v);
  if (subgroupElect()) red[gl_SubgroupID] = s;
  barrier();
  float r = -3.402823466e38;
  uint n = subgroupAdd(1u), rank = subgroupExclusiveAdd(1u);
  for (uint i = rank; i < gl_NumSubgroups; i += n) r = max(r, red[i]);
  r = subgroupMax(r);
  barrier();
  return r;
}
#else
shared float red[256];

float reduce_sum(float v) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1u) {
    if (t < s) red[t] += red[t + s];
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}

float reduce_max(float v) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1u) {
    if (t < s) red[t] = max(red[t], red[t + s]);
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}
#endif
