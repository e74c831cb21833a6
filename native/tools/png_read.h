// Minimal PNG reader for the native tools (--init-img, --mask): 8-bit grey, grey+alpha, RGB, RGBA and palette
// images, non-interlaced, with our own inflate (stored, fixed and dynamic Huffman blocks) and the five row
// filters. Returns false with a reason for anything else (16-bit, interlaced, corrupt data).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sdntool {

namespace pngr {

struct BitReader {
  const uint8_t* p;
  size_t n, pos = 0;
  uint32_t bitbuf = 0;
  int bitcnt = 0;
  bool bad = false;
  BitReader(const uint8_t* d, size_t len) : p(d), n(len) {}
  uint32_t bits(int k) {
    while (bitcnt < k) {
      if (pos >= n) {
        bad = true;
        return 0;
      }
      bitbuf |= (uint32_t)p[pos++] << bitcnt;
      bitcnt += 8;
    }
    uint32_t v = bitbuf & ((1u << k) - 1);
    bitbuf >>= k;
    bitcnt -= k;
    return v;
  }
};

// Canonical Huffman code: counts per length and symbols ordered by code.
struct Huffman {
  uint16_t count[16] = {};
  std::vector<uint16_t> symbol;
  bool build(const uint8_t* lengths, int n) {
    symbol.assign(n, 0);
    for (int i = 0; i < 16; ++i) count[i] = 0;
    for (int i = 0; i < n; ++i) count[lengths[i]]++;
    count[0] = 0;
    int left = 1;
    for (int len = 1; len < 16; ++len) {
      left <<= 1;
      left -= count[len];
      if (left < 0) return false;  // over-subscribed
    }
    uint16_t offs[16];
    offs[1] = 0;
    for (int len = 1; len < 15; ++len) offs[len + 1] = offs[len] + count[len];
    for (int i = 0; i < n; ++i)
      if (lengths[i]) symbol[offs[lengths[i]]++] = (uint16_t)i;
    return true;
  }
  int decode(BitReader& br) const {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      code |= (int)br.bits(1);
      if (br.bad) return -1;
      int c = count[len];
      if (code - c < first) return symbol[index + (code - first)];
      index += c;
      first += c;
      first <<= 1;
      code <<= 1;
    }
    return -1;
  }
};

inline bool inflate(const uint8_t* data, size_t len, std::vector<uint8_t>& out, std::string& err) {
  static const uint16_t kLenBase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                        35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const uint16_t kDistBase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                         193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static const uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  if (len < 2 || (data[0] & 0x0f) != 8 || ((data[0] << 8) | data[1]) % 31 != 0 || (data[1] & 0x20)) {
    err = "not a zlib stream";
    return false;
  }
  BitReader br(data + 2, len - 2);
  bool last = false;
  while (!last) {
    last = br.bits(1);
    uint32_t type = br.bits(2);
    if (br.bad) break;
    if (type == 0) {
      br.bitbuf = 0;
      br.bitcnt = 0;
      if (br.pos + 4 > br.n) {
        err = "truncated stored block";
        return false;
      }
      uint32_t l = br.p[br.pos] | (br.p[br.pos + 1] << 8);
      uint32_t nl = br.p[br.pos + 2] | (br.p[br.pos + 3] << 8);
      br.pos += 4;
      if ((l ^ 0xffffu) != nl || br.pos + l > br.n) {
        err = "bad stored block";
        return false;
      }
      out.insert(out.end(), br.p + br.pos, br.p + br.pos + l);
      br.pos += l;
      continue;
    }
    Huffman lit, dist;
    uint8_t lengths[320];
    if (type == 1) {
      int i = 0;
      for (; i < 144; ++i) lengths[i] = 8;
      for (; i < 256; ++i) lengths[i] = 9;
      for (; i < 280; ++i) lengths[i] = 7;
      for (; i < 288; ++i) lengths[i] = 8;
      lit.build(lengths, 288);
      for (i = 0; i < 30; ++i) lengths[i] = 5;
      dist.build(lengths, 30);
    } else if (type == 2) {
      int nlen = (int)br.bits(5) + 257, ndist = (int)br.bits(5) + 1, ncode = (int)br.bits(4) + 4;
      static const uint8_t kOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
      uint8_t cl[19] = {};
      for (int i = 0; i < ncode; ++i) cl[kOrder[i]] = (uint8_t)br.bits(3);
      Huffman clh;
      if (br.bad || nlen > 286 || ndist > 30 || !clh.build(cl, 19)) {
        err = "bad dynamic block header";
        return false;
      }
      int i = 0;
      while (i < nlen + ndist) {
        int sym = clh.decode(br);
        if (sym < 0) {
          err = "bad code lengths";
          return false;
        }
        if (sym < 16) {
          lengths[i++] = (uint8_t)sym;
        } else {
          int rep = 0;
          uint8_t val = 0;
          if (sym == 16) {
            if (i == 0) {
              err = "bad repeat";
              return false;
            }
            val = lengths[i - 1];
            rep = 3 + (int)br.bits(2);
          } else if (sym == 17) {
            rep = 3 + (int)br.bits(3);
          } else {
            rep = 11 + (int)br.bits(7);
          }
          if (i + rep > nlen + ndist) {
            err = "code lengths overflow";
            return false;
          }
          while (rep--) lengths[i++] = val;
        }
      }
      if (!lit.build(lengths, nlen) || !dist.build(lengths + nlen, ndist)) {
        err = "bad Huffman code";
        return false;
      }
    } else {
      err = "bad block type";
      return false;
    }
    for (;;) {
      int sym = lit.decode(br);
      if (sym < 0) {
        err = "bad literal/length code";
        return false;
      }
      if (sym < 256) {
        out.push_back((uint8_t)sym);
      } else if (sym == 256) {
        break;
      } else {
        sym -= 257;
        if (sym >= 29) {
          err = "bad length symbol";
          return false;
        }
        size_t l = kLenBase[sym] + br.bits(kLenExtra[sym]);
        int ds = dist.decode(br);
        if (ds < 0 || ds >= 30) {
          err = "bad distance code";
          return false;
        }
        size_t d = kDistBase[ds] + br.bits(kDistExtra[ds]);
        if (br.bad || d > out.size()) {
          err = "distance too far back";
          return false;
        }
        size_t from = out.size() - d;
        for (size_t k = 0; k < l; ++k) out.push_back(out[from + k]);
      }
    }
  }
  if (br.bad) {
    err = "truncated deflate data";
    return false;
  }
  return true;
}

inline uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

}  // namespace pngr

// Reads an 8-bit PNG into interleaved pixels; channels_out = 1 (the first channel: grey, or red of RGB / palette
// images) or 3 (RGB; grey is replicated). Alpha is dropped.
inline bool read_png(const std::string& path, int channels_out, std::vector<uint8_t>& pixels, int& width, int& height,
                     std::string& err) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    err = "cannot open " + path;
    return false;
  }
  std::vector<uint8_t> file;
  uint8_t buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) file.insert(file.end(), buf, buf + got);
  std::fclose(f);
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (file.size() < 8 || !std::equal(kSig, kSig + 8, file.begin())) {
    err = path + " is not a PNG file";
    return false;
  }
  size_t pos = 8;
  int depth = 0, ctype = -1, interlace = 0;
  std::vector<uint8_t> idat, palette;
  width = height = 0;
  while (pos + 8 <= file.size()) {
    uint32_t len = pngr::be32(&file[pos]);
    std::string type(reinterpret_cast<const char*>(&file[pos + 4]), 4);
    if (len > file.size() - pos - 12) {
      err = path + ": truncated PNG chunk " + type;
      return false;
    }
    const uint8_t* d = &file[pos + 8];
    if (type == "IHDR" && len >= 13) {
      width = (int)pngr::be32(d);
      height = (int)pngr::be32(d + 4);
      depth = d[8];
      ctype = d[9];
      interlace = d[12];
    } else if (type == "PLTE") {
      palette.assign(d, d + len);
    } else if (type == "IDAT") {
      idat.insert(idat.end(), d, d + len);
    } else if (type == "IEND") {
      break;
    }
    pos += 12 + len;
  }
  int src_ch = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : ctype == 6 ? 4 : 0;
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384 || src_ch == 0) {
    err = path + ": unsupported or missing PNG header";
    return false;
  }
  if (depth != 8 || interlace != 0) {
    err = path + ": only 8-bit non-interlaced PNGs are read here (convert the image, or use the Node API)";
    return false;
  }
  std::vector<uint8_t> raw;
  if (!pngr::inflate(idat.data(), idat.size(), raw, err)) {
    err = path + ": " + err;
    return false;
  }
  const size_t stride = (size_t)width * src_ch;
  if (raw.size() < (stride + 1) * height) {
    err = path + ": PNG image data is shorter than the image";
    return false;
  }
  std::vector<uint8_t> img((size_t)height * stride);
  for (int y = 0; y < height; ++y) {
    const uint8_t* in = &raw[(stride + 1) * y];
    int filter = in[0];
    ++in;
    uint8_t* row = &img[stride * y];
    const uint8_t* prev = y ? &img[stride * (y - 1)] : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      int a = x >= (size_t)src_ch ? row[x - src_ch] : 0;
      int b = prev ? prev[x] : 0;
      int c = (prev && x >= (size_t)src_ch) ? prev[x - src_ch] : 0;
      int v = in[x];
      switch (filter) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) / 2; break;
        case 4: {
          int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          err = path + ": bad PNG row filter";
          return false;
      }
      row[x] = (uint8_t)v;
    }
  }
  pixels.assign((size_t)width * height * channels_out, 0);
  for (size_t i = 0; i < (size_t)width * height; ++i) {
    uint8_t rgb[3];
    const uint8_t* s = &img[i * src_ch];
    if (ctype == 3) {
      size_t k = (size_t)s[0] * 3;
      if (k + 3 > palette.size()) {
        err = path + ": palette index out of range";
        return false;
      }
      rgb[0] = palette[k];
      rgb[1] = palette[k + 1];
      rgb[2] = palette[k + 2];
    } else if (src_ch <= 2) {
      rgb[0] = rgb[1] = rgb[2] = s[0];
    } else {
      rgb[0] = s[0];
      rgb[1] = s[1];
      rgb[2] = s[2];
    }
    for (int k = 0; k < channels_out; ++k) pixels[i * channels_out + k] = rgb[k];
  }
  return true;
}

}  // namespace sdntool
