// Minimal PNG reader for the native tools (control images in sdn_cli): 8-bit greyscale, grey+alpha, RGB, RGBA and
// palette images, non-interlaced, all five filters; its own inflate (stored, fixed and dynamic Huffman blocks).
// Returns false with a message for anything else (16-bit, interlaced, corrupt data). Header-only, no dependencies.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sdntool {

namespace png_detail {

struct Bits {
  const uint8_t* p;
  size_t n, pos = 0;
  uint32_t buf = 0;
  int cnt = 0;
  bool bad = false;
  uint32_t get(int k) {
    while (cnt < k) {
      if (pos >= n) {
        bad = true;
        return 0;
      }
      buf |= (uint32_t)p[pos++] << cnt;
      cnt += 8;
    }
    uint32_t v = buf & ((1u << k) - 1);
    buf >>= k;
    cnt -= k;
    return v;
  }
};

struct Huff {
  uint16_t count[16] = {0};
  std::vector<uint16_t> sym;
  bool build(const uint8_t* len, int n) {
    for (int i = 0; i < 16; ++i) count[i] = 0;
    for (int i = 0; i < n; ++i) count[len[i]]++;
    count[0] = 0;
    uint16_t offs[16];
    offs[1] = 0;
    for (int i = 1; i < 15; ++i) offs[i + 1] = offs[i] + count[i];
    sym.assign(n, 0);
    for (int i = 0; i < n; ++i)
      if (len[i]) sym[offs[len[i]]++] = (uint16_t)i;
    return true;
  }
  int decode(Bits& b) const {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      code |= (int)b.get(1);
      if (b.bad) return -1;
      int c = count[len];
      if (code - c < first) return sym[index + (code - first)];
      index += c;
      first += c;
      first <<= 1;
      code <<= 1;
    }
    return -1;
  }
};

inline bool inflate(const uint8_t* src, size_t n, std::vector<uint8_t>& out, size_t limit) {
  static const uint16_t lbase[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                   35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const uint8_t lext[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const uint16_t dbase[] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                   193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static const uint8_t dext[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  if (n < 2) return false;
  Bits b{src + 2, n - 2};  // skip the zlib header
  int last = 0;
  do {
    last = (int)b.get(1);
    int type = (int)b.get(2);
    if (b.bad) return false;
    if (type == 0) {
      b.buf = 0;
      b.cnt = 0;
      if (b.pos + 4 > b.n) return false;
      uint16_t len = (uint16_t)(b.p[b.pos] | (b.p[b.pos + 1] << 8));
      b.pos += 4;
      if (b.pos + len > b.n || out.size() + len > limit) return false;
      out.insert(out.end(), b.p + b.pos, b.p + b.pos + len);
      b.pos += len;
      continue;
    }
    if (type == 3) return false;
    Huff lit, dist;
    uint8_t lens[320] = {0};
    if (type == 1) {
      for (int i = 0; i < 144; ++i) lens[i] = 8;
      for (int i = 144; i < 256; ++i) lens[i] = 9;
      for (int i = 256; i < 280; ++i) lens[i] = 7;
      for (int i = 280; i < 288; ++i) lens[i] = 8;
      lit.build(lens, 288);
      uint8_t dl[30];
      for (int i = 0; i < 30; ++i) dl[i] = 5;
      dist.build(dl, 30);
    } else {
      int hlit = (int)b.get(5) + 257, hdist = (int)b.get(5) + 1, hclen = (int)b.get(4) + 4;
      static const uint8_t ord[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
      uint8_t cl[19] = {0};
      for (int i = 0; i < hclen; ++i) cl[ord[i]] = (uint8_t)b.get(3);
      Huff ch;
      ch.build(cl, 19);
      int i = 0;
      while (i < hlit + hdist) {
        int s = ch.decode(b);
        if (s < 0) return false;
        if (s < 16) lens[i++] = (uint8_t)s;
        else {
          int rep = 0;
          uint8_t v = 0;
          if (s == 16) {
            if (i == 0) return false;
            v = lens[i - 1];
            rep = 3 + (int)b.get(2);
          } else if (s == 17) rep = 3 + (int)b.get(3);
          else rep = 11 + (int)b.get(7);
          if (i + rep > hlit + hdist) return false;
          while (rep--) lens[i++] = v;
        }
        if (b.bad) return false;
      }
      lit.build(lens, hlit);
      dist.build(lens + hlit, hdist);
    }
    for (;;) {
      int s = lit.decode(b);
      if (s < 0) return false;
      if (s < 256) {
        if (out.size() >= limit) return false;
        out.push_back((uint8_t)s);
      } else if (s == 256) {
        break;
      } else {
        s -= 257;
        if (s >= 29) return false;
        size_t len = lbase[s] + b.get(lext[s]);
        int d = dist.decode(b);
        if (d < 0 || d >= 30) return false;
        size_t off = dbase[d] + b.get(dext[d]);
        if (b.bad || off > out.size() || out.size() + len > limit) return false;
        size_t from = out.size() - off;
        for (size_t k = 0; k < len; ++k) out.push_back(out[from + k]);
      }
    }
  } while (!last);
  return true;
}

inline uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

}  // namespace png_detail

// Reads `path` into RGB8 (alpha dropped). On failure returns false and sets err.
inline bool read_png_rgb(const std::string& path, std::vector<uint8_t>& rgb, int& width, int& height,
                         std::string& err) {
  using namespace png_detail;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    err = path + ": cannot open";
    return false;
  }
  std::vector<uint8_t> d;
  uint8_t tmp[65536];
  size_t r;
  while ((r = std::fread(tmp, 1, sizeof tmp, f)) > 0 && d.size() < (256u << 20)) d.insert(d.end(), tmp, tmp + r);
  std::fclose(f);
  static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (d.size() < 33 || !std::equal(sig, sig + 8, d.begin())) {
    err = path + ": not a PNG file";
    return false;
  }
  size_t pos = 8;
  uint32_t w = 0, h = 0;
  int depth = 0, ctype = -1, interlace = 0;
  std::vector<uint8_t> idat, pal;
  while (pos + 12 <= d.size()) {
    uint32_t len = be32(&d[pos]);
    std::string type(reinterpret_cast<const char*>(&d[pos + 4]), 4);
    if (len > d.size() - pos - 12) break;
    const uint8_t* c = &d[pos + 8];
    if (type == "IHDR" && len >= 13) {
      w = be32(c);
      h = be32(c + 4);
      depth = c[8];
      ctype = c[9];
      interlace = c[12];
    } else if (type == "PLTE") {
      pal.assign(c, c + len);
    } else if (type == "IDAT") {
      idat.insert(idat.end(), c, c + len);
    } else if (type == "IEND") {
      break;
    }
    pos += 12 + len;
  }
  int ch = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : ctype == 6 ? 4 : 0;
  if (!w || !h || w > 16384 || h > 16384 || depth != 8 || !ch || interlace) {
    err = path + ": unsupported PNG (8-bit non-interlaced grey/RGB/RGBA/palette images only)";
    return false;
  }
  const size_t stride = (size_t)w * ch;
  std::vector<uint8_t> raw;
  raw.reserve((stride + 1) * h);
  if (!inflate(idat.data(), idat.size(), raw, (stride + 1) * h) || raw.size() != (stride + 1) * h) {
    err = path + ": corrupt PNG image data";
    return false;
  }
  std::vector<uint8_t> px(stride * h), prev(stride, 0);
  for (uint32_t y = 0; y < h; ++y) {
    const uint8_t* line = &raw[y * (stride + 1)];
    int ft = line[0];
    uint8_t* o = &px[y * stride];
    for (size_t x = 0; x < stride; ++x) {
      int a = x >= (size_t)ch ? o[x - ch] : 0, b = prev[x], c = x >= (size_t)ch ? prev[x - ch] : 0, v = line[1 + x];
      int pr;
      switch (ft) {
        case 0: pr = 0; break;
        case 1: pr = a; break;
        case 2: pr = b; break;
        case 3: pr = (a + b) / 2; break;
        case 4: {
          int p = a + b - c, pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
          pr = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          err = path + ": corrupt PNG filter";
          return false;
      }
      o[x] = (uint8_t)(v + pr);
    }
    std::copy(o, o + stride, prev.begin());
  }
  rgb.assign((size_t)w * h * 3, 0);
  for (size_t i = 0; i < (size_t)w * h; ++i) {
    const uint8_t* s = &px[i * ch];
    if (ctype == 3) {
      if ((size_t)s[0] * 3 + 2 >= pal.size()) {
        err = path + ": PNG palette index out of range";
        return false;
      }
      for (int k = 0; k < 3; ++k) rgb[i * 3 + k] = pal[s[0] * 3 + k];
    } else if (ch <= 2) {
      rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = s[0];
    } else {
      for (int k = 0; k < 3; ++k) rgb[i * 3 + k] = s[k];
    }
  }
  width = (int)w;
  height = (int)h;
  return true;
}

}  // namespace sdntool
