// Reading one element of a weight row stored in its file type (GGUF/ggml block layouts, see
// /work/shared/docs/ENGINE-FACTS.md and native/core/quant.cpp). Compiled once per type: WT_F32, WT_F16, ...
// `W` is the weight buffer as 32-bit words; `rb` the byte offset of the row; `k` the element within the row.
// Every row, block scale and 16-bit field starts at an even byte offset (all block sizes are even); 8-bit fields
// may be at any offset.
//
// Load flavours (one module each, picked per device by vulkan_backend.cpp):
//  * plain: 32-bit loads only; bytes and halves are extracted from words (unpackHalf2x16, shifts). Runs anywhere.
//  * S16 (storageBuffer16BitAccess): f16 values (weights, block scales) are read as float16_t and converted, bf16
//    and other 16-bit fields as uint16_t. No f16 arithmetic: every product and sum stays in f32.
//  * S8 (storageBuffer8BitAccess, with S16): quant bytes are read as uint8_t / int8_t (sign-extended by the load).

#ifdef S16
#extension GL_EXT_shader_16bit_storage : require
layout(buffer_reference, std430, buffer_reference_align = 2) buffer HBuf { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer SBuf { uint16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer H2Buf { f16vec2 v[]; };
#endif
#ifdef S8
#extension GL_EXT_shader_8bit_storage : require
layout(buffer_reference, std430, buffer_reference_align = 1) buffer BBuf { uint8_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 1) buffer CBuf { int8_t v[]; };
#endif

int sext8(uint b) { return int(b << 24u) >> 24; }
#ifdef S8
uint rd8(UBuf W, uint off) { return uint(BBuf(W).v[off]); }
int rds8(UBuf W, uint off) { return int(CBuf(W).v[off]); }  // signed byte
#else
uint rd8(UBuf W, uint off) { return (W.v[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu; }
int rds8(UBuf W, uint off) { return sext8(rd8(W, off)); }
#endif
#ifdef S16
uint rd16(UBuf W, uint off) { return uint(SBuf(W).v[off >> 1u]); }           // off even
float rdf16(UBuf W, uint off) { return float(HBuf(W).v[off >> 1u]); }        // off even
vec2 rdf16x2(UBuf W, uint word) { return vec2(H2Buf(W).v[word]); }          // halves 2*word, 2*word+1
#else
uint rd16(UBuf W, uint off) { return (W.v[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu; }  // off even
float rdf16(UBuf W, uint off) { return unpackHalf2x16(rd16(W, off)).x; }
vec2 rdf16x2(UBuf W, uint word) { return unpackHalf2x16(W.v[word]); }
#endif
uint rd32u(UBuf W, uint off) { return rd16(W, off) | (rd16(W, off + 2u) << 16u); }  // off even

#if defined(WT_Q4_K) || defined(WT_Q5_K)
// 6-bit scale and min of sub-block j (0..7) from the 12 scale bytes at s
void scale_min_k4(UBuf W, uint s, uint j, out float sc, out float mn) {
  if (j < 4u) {
    sc = float(rd8(W, s + j) & 63u);
    mn = float(rd8(W, s + j + 4u) & 63u);
  } else {
    sc = float((rd8(W, s + j + 4u) & 15u) | ((rd8(W, s + j - 4u) >> 6u) << 4u));
    mn = float((rd8(W, s + j + 4u) >> 4u) | ((rd8(W, s + j) >> 6u) << 4u));
  }
}
#endif

// bytes of one row of `k` elements
uint row_bytes_for(uint k) {
#if defined(WT_F32)
  return k * 4u;
#elif defined(WT_F16) || defined(WT_BF16)
  return k * 2u;
#elif defined(WT_Q8_0)
  return k / 32u * 34u;
#elif defined(WT_Q4_0)
  return k / 32u * 18u;
#elif defined(WT_Q4_1)
  return k / 32u * 20u;
#elif defined(WT_Q5_0)
  return k / 32u * 22u;
#elif defined(WT_Q5_1)
  return k / 32u * 24u;
#elif defined(WT_Q4_K)
  return k / 256u * 144u;
#elif defined(WT_Q5_K)
  return k / 256u * 176u;
#elif defined(WT_Q6_K)
  return k / 256u * 210u;
#endif
}

float wdec(UBuf W, uint rb, uint k) {
#if defined(WT_F32)
  return uintBitsToFloat(W.v[(rb >> 2u) + k]);
#elif defined(WT_F16)
  return rdf16(W, rb + 2u * k);
#elif defined(WT_BF16)
  return uintBitsToFloat(rd16(W, rb + 2u * k) << 16u);
#elif defined(WT_Q8_0)
  uint off = rb + (k >> 5u) * 34u;
  return rdf16(W, off) * float(rds8(W, off + 2u + (k & 31u)));
#elif defined(WT_Q4_0) || defined(WT_Q4_1) || defined(WT_Q5_0) || defined(WT_Q5_1)
  // 32 elements per block: f16 scale d [, f16 min m (Q4_1, Q5_1)] [, 32 high bits (Q5_*)], 16 bytes of nibbles
  // (element j in the low nibble of byte j for j < 16, in the high nibble of byte j - 16 after)
#if defined(WT_Q4_0)
  const uint BS = 18u, HDR = 2u;
#elif defined(WT_Q4_1)
  const uint BS = 20u, HDR = 4u;
#elif defined(WT_Q5_0)
  const uint BS = 22u, HDR = 2u;
#else
  const uint BS = 24u, HDR = 4u;
#endif
  uint off = rb + (k >> 5u) * BS, j = k & 31u;
#if defined(WT_Q5_0) || defined(WT_Q5_1)
  uint b = rd8(W, off + HDR + 4u + (j & 15u));
  uint q = (j < 16u ? (b & 15u) : (b >> 4u)) | (((rd32u(W, off + HDR) >> j) & 1u) << 4u);
#else
  uint b = rd8(W, off + HDR + (j & 15u));
  uint q = j < 16u ? (b & 15u) : (b >> 4u);
#endif
#if defined(WT_Q4_0)
  return rdf16(W, off) * float(int(q) - 8);
#elif defined(WT_Q5_0)
  return rdf16(W, off) * float(int(q) - 16);
#else
  return rdf16(W, off) * float(q) + rdf16(W, off + 2u);
#endif
#elif defined(WT_Q4_K) || defined(WT_Q5_K)
  // 256 elements per block: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, [32 bytes of high bits (Q5_K)],
  // 128 bytes of nibbles (64-element chunks c: low nibbles first 32, high nibbles next 32)
#if defined(WT_Q4_K)
  uint off = rb + (k >> 8u) * 144u, qs = off + 16u;
#else
  uint off = rb + (k >> 8u) * 176u, qs = off + 48u;
#endif
  uint j = k & 255u, c = j >> 6u, w = j & 63u, l = w & 31u, hi = w >> 5u;
  float sc, mn;
  scale_min_k4(W, off + 4u, 2u * c + hi, sc, mn);
  uint b = rd8(W, qs + c * 32u + l);
  uint q = hi == 0u ? (b & 15u) : (b >> 4u);
#if defined(WT_Q5_K)
  q += ((rd8(W, off + 16u + l) >> (2u * c + hi)) & 1u) << 4u;
#endif
  float d1 = rdf16(W, off) * sc, m1 = rdf16(W, off + 2u) * mn;
  return d1 * float(q) - m1;
#elif defined(WT_Q6_K)
  uint off = rb + (k >> 8u) * 210u;
  uint j = k & 255u, half_ = j >> 7u, r = j & 127u, quarter = r >> 5u, l = r & 31u;
  uint ql = off + half_ * 64u, qh = off + 128u + half_ * 32u;
  uint lo = rd8(W, ql + l + ((quarter & 1u) << 5u));
  lo = quarter < 2u ? (lo & 15u) : (lo >> 4u);
  uint h = (rd8(W, qh + l) >> (2u * quarter)) & 3u;
  int q = int(lo | (h << 4u)) - 32;
  float sc = float(rds8(W, off + 192u + half_ * 8u + (l >> 4u) + 2u * quarter));
  float d = rdf16(W, off + 208u);
  return d * sc * float(q);
#endif
}
