// Shared by every sdnode compute shader. Buffers are reached through device addresses (buffer_reference, Vulkan
// 1.2 bufferDeviceAddress), so no descriptor sets and no maxStorageBufferRange limit: each shader gets up to four
// addresses (uvec2 = low, high 32 bits) and 24 32-bit parameters in its push constants (128 bytes, the minimum
// every device offers). The C++ side fills the same layout (struct Push in vulkan_backend.cpp).
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer FBuf { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer UBuf { uint v[]; };

layout(push_constant) uniform Push {
  uvec2 a0, a1, a2, a3;
  uint u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, u10, u11;
  uint u12, u13, u14, u15, u16, u17, u18, u19, u20, u21, u22, u23;
} pc;

// Linear index of this invocation for 1-D work laid out over a 2-D grid of 256-wide workgroups (the grid is
// folded because a dispatch has at most 65535 workgroups per dimension).
uint flat_index() {
  return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
}

// Invocations in the whole dispatch (grid-stride loops: each invocation handles items i, i + this, ...; fewer,
// fuller workgroups cost less than one per 256 items, especially on CPU implementations such as lavapipe).
uint total_invocations() { return gl_NumWorkGroups.x * gl_NumWorkGroups.y * 256u; }

float erf_approx(float x) {
  // erf with |error| < 1.2e-7 (Numerical Recipes erfc Chebyshev fit), evaluated in float
  float z = abs(x);
  float t = 1.0 / (1.0 + 0.5 * z);
  float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
  float e = 1.0 - r;
  return x >= 0.0 ? e : -e;
}

float sigmoid_f(float x) { return 1.0 / (1.0 + exp(-x)); }

float tanh_f(float x) {
  // tanh without overflow for large |x|
  float e = exp(-2.0 * abs(x));
  float t = (1.0 - e) / (1.0 + e);
  return x >= 0.0 ? t : -t;
}

float gelu_erf(float x) { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
