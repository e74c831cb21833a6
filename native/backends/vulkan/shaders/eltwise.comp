// Element-wise operations (one output element per invocation).
// a0 = a, a1 = b (or unused), a3 = out (may equal a for add_)
// u0 = n (output elements), MODE (specialization constant 0: one pipeline per mode, so CPU implementations
// such as lavapipe, which run every branch under a mask, only compile the one that runs), u2/u3 = float params (scale / combine weights)
// broadcast (add/mul): u4..u7 = a's shape (4 dims, leading 1s), u8..u11 = b's strides per dim (0 = broadcast)
// geglu: u4 = N (half of the input's last dimension)
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint MODE = 0u;

float unary_op(uint mode, float x) {
  if (mode == 0u) return x * sigmoid_f(x);                     // silu
  if (mode == 1u) return gelu_erf(x);                          // gelu (erf)
  if (mode == 2u) {                                            // gelu (tanh)
    float inner = 0.79788456080286536 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh_f(inner));
  }
  if (mode == 3u) return x * sigmoid_f(1.702 * x);             // quick gelu
  if (mode == 4u) return max(x, 0.0);                          // relu
  return tanh_f(x);                                            // tanh
}

void item(uint i) {
  const uint mode = MODE;
  FBuf a = FBuf(pc.a0);
  FBuf o = FBuf(pc.a3);
  if (mode < 8u) {
    o.v[i] = unary_op(mode, a.v[i]);
  } else if (mode == 10u || mode == 11u) {  // add / mul with broadcasting
    FBuf b = FBuf(pc.a1);
    uint r = i;
    uint c3 = r % pc.u7; r /= pc.u7;
    uint c2 = r % pc.u6; r /= pc.u6;
    uint c1 = r % pc.u5; r /= pc.u5;
    uint c0 = r;
    uint bi = c0 * pc.u8 + c1 * pc.u9 + c2 * pc.u10 + c3 * pc.u11;
    float x = a.v[i], y = b.v[bi];
    o.v[i] = mode == 10u ? x + y : x * y;
  } else if (mode == 12u) {  // scale
    o.v[i] = a.v[i] * uintBitsToFloat(pc.u2);
  } else if (mode == 13u) {  // combine
    FBuf b = FBuf(pc.a1);
    o.v[i] = uintBitsToFloat(pc.u2) * a.v[i] + uintBitsToFloat(pc.u3) * b.v[i];
  } else if (mode == 14u) {  // geglu
    uint n = pc.u4;
    uint row = i / n, c = i % n;
    float x = a.v[row * 2u * n + c];
    float g = a.v[row * 2u * n + n + c];
    o.v[i] = x * gelu_erf(g);
  }
}

void main() {
  const uint step = total_invocations();
  for (uint i = flat_index(); i < pc.u0; i += step) item(i);
}
