// Reading one element of a weight row stored in its file type (GGUF/ggml block layouts, see
// /work/shared/docs/ENGINE-FACTS.md and native/core/quant.cpp). Compiled once per type: WT_F32, WT_F16, ...
// `W` is the weight buffer as 32-bit words; `rb` the byte offset of the row; `k` the element within the row.
// Blocks are not 4-byte aligned (Q8_0 = 34 bytes), so bytes are extracted from words.

uint rd8(UBuf W, uint off) { return (W.v[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu; }
uint rd16(UBuf W, uint off) {
  if ((off & 3u) != 3u) return (W.v[off >> 2u] >> ((off & 3u) * 8u)) & 0xffffu;
  return rd8(W, off) | (rd8(W, off + 1u) << 8u);
}
uint rd32u(UBuf W, uint off) { return rd16(W, off) | (rd16(W, off + 2u) << 16u); }
float rdf16(UBuf W, uint off) { return unpackHalf2x16(rd16(W, off)).x; }
int sext8(uint b) { return int(b << 24u) >> 24; }

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
  return rdf16(W, off) * float(sext8(rd8(W, off + 2u + (k & 31u))));
#elif defined(WT_Q4_0) || defined(WT_Q4_1)
#if defined(WT_Q4_0)
  uint off = rb + (k >> 5u) * 18u, qs = off + 2u;
#else
  uint off = rb + (k >> 5u) * 20u, qs = off + 4u;
#endif
  uint j = k & 31u;
  uint b = rd8(W, qs + (j & 15u));
  uint q = j < 16u ? (b & 15u) : (b >> 4u);
#if defined(WT_Q4_0)
  return rdf16(W, off) * float(int(q) - 8);
#else
  return rdf16(W, off) * float(q) + rdf16(W, off + 2u);
#endif
#elif defined(WT_Q5_0) || defined(WT_Q5_1)
#if defined(WT_Q5_0)
  uint off = rb + (k >> 5u) * 22u, qh = off + 2u;
#else
  uint off = rb + (k >> 5u) * 24u, qh = off + 4u;
#endif
  uint j = k & 31u;
  uint b = rd8(W, qh + 4u + (j & 15u));
  uint q = (j < 16u ? (b & 15u) : (b >> 4u)) | (((rd32u(W, qh) >> j) & 1u) << 4u);
#if defined(WT_Q5_0)
  return rdf16(W, off) * float(int(q) - 16);
#else
  return rdf16(W, off) * float(q) + rdf16(W, off + 2u);
#endif
#elif defined(WT_Q4_K)
  uint off = rb + (k >> 8u) * 144u;
  uint j = k & 255u, c = j >> 6u, w = j & 63u, l = w & 31u, hi = w >> 5u;
  float sc, mn;
  scale_min_k4(W, off + 4u, 2u * c + hi, sc, mn);
  uint b = rd8(W, off + 16u + c * 32u + l);
  uint q = hi == 0u ? (b & 15u) : (b >> 4u);
  float d1 = rdf16(W, off) * sc, m1 = rdf16(W, off + 2u) * mn;
  return d1 * float(q) - m1;
#elif defined(WT_Q5_K)
  uint off = rb + (k >> 8u) * 176u;
  uint j = k & 255u, c = j >> 6u, w = j & 63u, l = w & 31u, hi = w >> 5u;
  float sc, mn;
  scale_min_k4(W, off + 4u, 2u * c + hi, sc, mn);
  uint b = rd8(W, off + 48u + c * 32u + l);
  uint h = rd8(W, off + 16u + l);
  uint q = (hi == 0u ? (b & 15u) : (b >> 4u)) + (((h >> (2u * c + hi)) & 1u) << 4u);
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
  float sc = float(sext8(rd8(W, off + 192u + half_ * 8u + (l >> 4u) + 2u * quarter)));
  float d = rdf16(W, off + 208u);
  return d * sc * float(q);
#endif
}
