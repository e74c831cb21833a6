// Quantization formats (core/quant.h): hand-computed blocks, round-trip error per type, dot products against a
// double-precision reference, SIMD levels against the scalar reference, error paths.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "core/quant_impl.h"
#include "sdn/error.h"
#include "test.h"

using namespace sdn;

namespace {

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 gen(seed * 7919u + 17u);
  std::normal_distribution<float> dist(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Every type with a quantizer, with the relative RMS round-trip error we guarantee on N(0,1) rows.
struct TypeBound {
  DType t;
  double rel_rms;
};
const TypeBound kQuantTypes[] = {
    {DType::F32, 0.0},      {DType::F64, 0.0},      {DType::F16, 4e-4},    {DType::BF16, 3e-3},
    {DType::Q8_0, 7e-3},    {DType::Q8_1, 7e-3},    {DType::Q8_K, 1.2e-2}, {DType::Q5_0, 5.5e-2},
    {DType::Q5_1, 5e-2},    {DType::Q4_0, 1.1e-1},  {DType::Q4_1, 1.0e-1}, {DType::Q6_K, 2.2e-2},
    {DType::Q5_K, 4.2e-2},  {DType::Q4_K, 8.5e-2},  {DType::Q3_K, 0.17},    {DType::Q2_K, 0.31},
};

// Types dequantize/dot accept (quantizable ones plus integers).
const DType kReadTypes[] = {DType::F32,  DType::F64,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q8_1,
                            DType::Q8_K, DType::Q5_0, DType::Q5_1, DType::Q4_0, DType::Q4_1, DType::Q6_K,
                            DType::Q5_K, DType::Q4_K, DType::Q3_K, DType::Q2_K, DType::I8,   DType::I16,
                            DType::I32,  DType::I64};

std::vector<SimdLevel> levels() {
  std::vector<SimdLevel> v;
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON})
    if (simd_supported(l)) v.push_back(l);
  return v;
}

struct LevelGuard {
  SimdLevel saved = simd_level();
  ~LevelGuard() { simd_set_level(saved); }
};

// Random but valid encoded row: random bytes with scale fields overwritten by finite, moderate values.
std::vector<uint8_t> random_encoded(DType t, int64_t n, uint32_t seed) {
  const DTypeTraits& tr = dtype_traits(t);
  std::vector<uint8_t> b(dtype_row_bytes(t, n));
  std::mt19937 gen(seed);
  for (auto& c : b) c = (uint8_t)gen();
  std::uniform_real_distribution<float> u(0.001f, 0.1f);
  auto put_f16 = [&](size_t off, bool may_neg) {
    float v = u(gen);
    if (may_neg && (gen() & 1)) v = -v;
    qimpl::wr16(&b[off], f32_to_f16(v));
  };
  const int64_t nb = n / tr.block_size;
  for (int64_t i = 0; i < nb; ++i) {
    size_t o = (size_t)i * tr.block_bytes;
    switch (t) {
      case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: put_f16(o, true); break;
      case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: put_f16(o, true); put_f16(o + 2, true); break;
      case DType::Q4_K: case DType::Q5_K: put_f16(o, false); put_f16(o + 2, false); break;
      case DType::Q6_K: put_f16(o + 208, true); break;
      case DType::Q2_K: put_f16(o + 80, false); put_f16(o + 82, false); break;
      case DType::Q3_K: put_f16(o + 108, true); break;
      case DType::Q8_K: {
        float d = u(gen);
        std::memcpy(&b[o], &d, 4);
        break;
      }
      case DType::F16:
      case DType::BF16: {
        float v = u(gen) * 20 - 1;
        qimpl::wr16(&b[o], t == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v));
        break;
      }
      case DType::F32: {
        float v = u(gen) * 20 - 1;
        std::memcpy(&b[o], &v, 4);
        break;
      }
      case DType::F64: {
        double v = u(gen) * 20 - 1;
        std::memcpy(&b[o], &v, 8);
        break;
      }
      default: break;  // integers: any bytes are valid
    }
  }
  return b;
}

std::vector<int64_t> lengths_for(DType t) {
  const int bs = dtype_traits(t).block_size;
  if (bs == 1) return {1, 3, 7, 16, 33, 100, 1000};
  if (bs == 32) return {32, 96, 256, 32 * 37};
  return {256, 512, 256 * 5};
}

bool bits_equal(const float* a, const float* b, size_t n, size_t* where) {
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0) {
      *where = i;
      return false;
    }
  return true;
}

// |f32 dot - exact| bound: a few ulps per term magnitude times sqrt(n) (plus block-sum reassociation).
double dot_tol(const float* w, const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs((double)w[i] * x[i]);
  return 4.0 * 5.96e-8 * (std::sqrt((double)n) + 8.0) * s + 1e-30;
}

}  // namespace

// ---- hand-computed blocks -------------------------------------------------------------------------------------

TEST(quant, q8_0_worked_example) {
  // ENGINE-FACTS 3.6: x[e] = (e - 12) * 0.25.
  float x[32];
  for (int e = 0; e < 32; ++e) x[e] = (float)(e - 12) * 0.25f;
  const uint8_t want[34] = {0xca, 0x28, 0xb0, 0xb6, 0xbd, 0xc4, 0xcb, 0xd1, 0xd8, 0xdf, 0xe5, 0xec,
                            0xf3, 0xf9, 0x00, 0x07, 0x0d, 0x14, 0x1b, 0x21, 0x28, 0x2f, 0x35, 0x3c,
                            0x43, 0x4a, 0x50, 0x57, 0x5e, 0x64, 0x6b, 0x72, 0x78, 0x7f};
  uint8_t got[34];
  quantize_row(DType::Q8_0, x, got, 32);
  for (int i = 0; i < 34; ++i) EXPECT_EQ((int)got[i], (int)want[i]);
  float y[32];
  dequantize_row(DType::Q8_0, want, y, 32);
  EXPECT_EQ(y[0], -2.9931640625f);
  EXPECT_EQ(y[31], 4.7516479492187500f);  // 127 * 0.0374145508 (fp16 0x28CA)
  EXPECT_EQ(y[12], 0.f);
}

TEST(quant, q4_0_worked_example) {
  // ENGINE-FACTS 3.2: same inputs; d = 4.75 / -8 = -0.59375 (fp16 0xB8C0).
  float x[32];
  for (int e = 0; e < 32; ++e) x[e] = (float)(e - 12) * 0.25f;
  const uint8_t want[18] = {0xc0, 0xb8, 0x6d, 0x6d, 0x5c, 0x5c, 0x5b, 0x4b, 0x4b,
                            0x3a, 0x3a, 0x39, 0x29, 0x28, 0x18, 0x18, 0x07, 0x07};
  uint8_t got[18];
  quantize_row(DType::Q4_0, x, got, 32);
  for (int i = 0; i < 18; ++i) EXPECT_EQ((int)got[i], (int)want[i]);
  float y[32];
  dequantize_row(DType::Q4_0, want, y, 32);
  EXPECT_EQ(y[0], -2.96875f);  // (13 - 8) * -0.59375
  EXPECT_EQ(y[16], 1.1875f);   // (6 - 8) * -0.59375
  EXPECT_EQ(y[15], 0.59375f);  // (7 - 8) * -0.59375
  EXPECT_EQ(y[31], 4.75f);     // (0 - 8) * -0.59375
}

TEST(quant, q5_0_hand_block) {
  // d = 0.25, qh = bits 0 and 31, qs[j] = j | (15 - j) << 4.
  uint8_t b[22] = {0x00, 0x34, 0x01, 0x00, 0x00, 0x80};
  for (int j = 0; j < 16; ++j) b[6 + j] = (uint8_t)(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(DType::Q5_0, b, y, 32);
  EXPECT_EQ(y[0], 0.f);       // (0 | 16) - 16
  EXPECT_EQ(y[1], -3.75f);    // 1 - 16 = -15
  EXPECT_EQ(y[15], -0.25f);   // 15 - 16
  EXPECT_EQ(y[16], -0.25f);   // high nibble of qs[0] = 15, no 5th bit
  EXPECT_EQ(y[30], -3.75f);   // high nibble 1
  EXPECT_EQ(y[31], 0.f);      // high nibble 0, 5th bit (bit 31) set -> 16
}

TEST(quant, q4_1_and_q5_1_hand_blocks) {
  // Q4_1: d = 0.5, m = -1, qs[j] = j | (15 - j) << 4.
  uint8_t b[20] = {0x00, 0x38, 0x00, 0xbc};
  for (int j = 0; j < 16; ++j) b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
  float y[32];
  dequantize_row(DType::Q4_1, b, y, 32);
  EXPECT_EQ(y[0], -1.f);
  EXPECT_EQ(y[5], 1.5f);    // 5 * 0.5 - 1
  EXPECT_EQ(y[16], 6.5f);   // 15 * 0.5 - 1
  EXPECT_EQ(y[31], -1.f);
  // Q5_1: same with qh = bit 1 and bit 17.
  uint8_t c[24] = {0x00, 0x38, 0x00, 0xbc, 0x02, 0x00, 0x02, 0x00};
  for (int j = 0; j < 16; ++j) c[8 + j] = (uint8_t)(j | ((15 - j) << 4));
  dequantize_row(DType::Q5_1, c, y, 32);
  EXPECT_EQ(y[0], -1.f);
  EXPECT_EQ(y[1], 7.5f);    // (1 + 16) * 0.5 - 1
  EXPECT_EQ(y[17], 14.f);   // (14 + 16) * 0.5 - 1
  EXPECT_EQ(y[18], 5.5f);   // 13 * 0.5 - 1
}

namespace {
// Q4_K/Q5_K test super-block header: d = 0.5, dmin = 0.25,
// sc = {1, 2, 3, 4, 17, 33, 63, 40}, mn = {0, 5, 10, 63, 16, 32, 1, 48}, packed by hand:
//   bytes 0-3  = sc[0..3] | (sc[4..7] >> 4) << 6 : 1|1<<6, 2|2<<6, 3|3<<6, 4|2<<6
//   bytes 4-7  = mn[0..3] | (mn[4..7] >> 4) << 6 : 0|1<<6, 5|2<<6, 10|0<<6, 63|3<<6
//   bytes 8-11 = (sc[4..7] & 15) | (mn[4..7] & 15) << 4 : 1|0, 1|0, 15|1<<4, 8|0
const uint8_t kK4Head[16] = {0x00, 0x38, 0x00, 0x34, 0x41, 0x82, 0xC3, 0x84,
                             0x40, 0x85, 0x0A, 0xFF, 0x01, 0x01, 0x1F, 0x08};
}  // namespace

TEST(quant, q4_K_hand_superblock) {
  uint8_t b[144];
  std::memcpy(b, kK4Head, 16);
  for (int i = 0; i < 128; ++i) b[16 + i] = (uint8_t)((i * 7 + 3) & 0xFF);
  // Our packer produces the same 12 scale bytes.
  const uint8_t sc[8] = {1, 2, 3, 4, 17, 33, 63, 40}, mn[8] = {0, 5, 10, 63, 16, 32, 1, 48};
  uint8_t packed[12];
  qimpl::k4_pack_scales(sc, mn, packed);
  for (int i = 0; i < 12; ++i) EXPECT_EQ((int)packed[i], (int)kK4Head[4 + i]);
  float y[256];
  dequantize_row(DType::Q4_K, b, y, 256);
  // y = d*sc[s]*q - dmin*mn[s]; qs byte 32c+l: low nibble -> element 64c+l, high -> 64c+32+l.
  EXPECT_EQ(y[0], 1.5f);          // qs[0]=0x03 low 3, s0: 0.5*1*3 - 0
  EXPECT_EQ(y[32], -1.25f);       // qs[0] high 0, s1: 0 - 0.25*5
  EXPECT_EQ(y[69], 6.5f);         // qs[37]=0x06 low 6, s2: 0.5*3*6 - 0.25*10
  EXPECT_EQ(y[127], 6.25f);       // qs[63]=0xBC high 11, s3: 0.5*4*11 - 0.25*63
  EXPECT_EQ(y[138], 72.5f);       // qs[74]=0x09 low 9, s4: 0.5*17*9 - 0.25*16
  EXPECT_EQ(y[161], 190.f);       // qs[65]=0xCA high 12, s5: 0.5*33*12 - 0.25*32
  EXPECT_EQ(y[192], 94.25f);      // qs[96]=0xA3 low 3, s6: 0.5*63*3 - 0.25*1
  EXPECT_EQ(y[255], 128.f);       // qs[127]=0x7C high 7, s7: 0.5*40*7 - 0.25*48
}

TEST(quant, q5_K_hand_superblock) {
  uint8_t b[176];
  std::memcpy(b, kK4Head, 16);
  for (int l = 0; l < 32; ++l) b[16 + l] = (uint8_t)((l * 9) & 0xFF);       // qh
  for (int i = 0; i < 128; ++i) b[48 + i] = (uint8_t)((i * 7 + 3) & 0xFF);  // qs
  float y[256];
  dequantize_row(DType::Q5_K, b, y, 256);
  // 5th bit of element 64c+l = qh[l] bit 2c; of element 64c+32+l = qh[l] bit 2c+1.
  EXPECT_EQ(y[3], 12.f);          // qs[3]=0x18 low 8, qh[3]=27 bit0=1 -> 24; s0: 0.5*1*24
  EXPECT_EQ(y[32], -1.25f);       // high 0, qh[0]=0 -> 0; s1: -0.25*5
  EXPECT_EQ(y[69], 30.5f);        // low 6, qh[5]=45 bit2=1 -> 22; s2: 0.5*3*22 - 2.5
  EXPECT_EQ(y[161], 190.f);       // high 12, qh[1]=9 bit5=0 -> 12; s5
  EXPECT_EQ(y[200], 850.25f);     // qs[104]=0xDB low 11, qh[8]=72 bit6=1 -> 27; s6: 0.5*63*27 - 0.25
  EXPECT_EQ(y[239], 308.f);       // qs[111]=0x0C high 0, qh[15]=135 bit7=1 -> 16; s7: 0.5*40*16 - 12
  EXPECT_EQ(y[255], 128.f);       // high 7, qh[31]=23 bit7=0 -> 7; s7
}

TEST(quant, q6_K_hand_superblock) {
  uint8_t b[210];
  for (int i = 0; i < 128; ++i) b[i] = (uint8_t)i;                           // ql
  for (int i = 0; i < 64; ++i) b[128 + i] = (uint8_t)((i * 37) & 0xFF);      // qh
  for (int j = 0; j < 16; ++j) b[192 + j] = (uint8_t)(int8_t)(j - 8);        // scales
  qimpl::wr16(b + 208, 0x3800);                                              // d = 0.5
  float y[256];
  dequantize_row(DType::Q6_K, b, y, 256);
  // y = d * scale[e/16] * (q - 32)
  EXPECT_EQ(y[0], 128.f);     // ql[0]=0 low 0, qh[0] bits0-1 = 0 -> q=0 -> -32; scale -8
  EXPECT_EQ(y[33], 45.f);     // ql[33] low 1, qh[1]=37 bits2-3 = 1 -> 17 -> -15; scale[2] = -6
  EXPECT_EQ(y[69], -32.f);    // ql[5] high 0, qh[5]=185 bits4-5 = 3 -> 48 -> 16; scale[4] = -4
  EXPECT_EQ(y[168], 8.f);     // half 1: ql[104] low 8, qh[40]=200 bits2-3 = 2 -> 40 -> 8; scale[10] = 2
  EXPECT_EQ(y[255], -87.5f);  // half 1: ql[127] high 7, qh[63]=27 bits6-7 = 0 -> 7 -> -25; scale[15] = 7
}

TEST(quant, q2_K_hand_superblock) {
  // scales[i] = i | (15 - i) << 4 (scale i, min 15 - i), qs[k] = 5k + 1, d = 0.5, dmin = 0.25.
  uint8_t b[84];
  for (int i = 0; i < 16; ++i) b[i] = (uint8_t)(i | ((15 - i) << 4));
  for (int k = 0; k < 64; ++k) b[16 + k] = (uint8_t)((k * 5 + 1) & 0xFF);
  qimpl::wr16(b + 80, 0x3800);
  qimpl::wr16(b + 82, 0x3400);
  float y[256];
  dequantize_row(DType::Q2_K, b, y, 256);
  // e: h = e/128, j = (e%128)/32, g = (e%32)/16, l = e%16; q = (qs[32h+16g+l] >> 2j) & 3
  EXPECT_EQ(y[0], -3.75f);   // qs[0]=1 -> 1; sub 0: 0.5*0*1 - 0.25*15
  EXPECT_EQ(y[37], -1.25f);  // j1 l5: qs[5]=26 -> 2; sub 2: 0.5*2*2 - 0.25*13
  EXPECT_EQ(y[100], -2.25f); // j3 l4: qs[4]=21 -> 0; sub 6: -0.25*9
  EXPECT_EQ(y[191], 15.5f);  // h1 j1 g1 l15: qs[63]=60 -> 3; sub 11: 0.5*11*3 - 0.25*4
  EXPECT_EQ(y[215], 6.f);    // h1 j2 g1 l7: qs[55]=20 -> 1; sub 13: 0.5*13*1 - 0.25*2
}

TEST(quant, q3_K_hand_superblock) {
  // hmask[k] = 3k, qs[k] = 5k + 1, d = 0.5; scale bytes chosen so the 16 scales are
  // {16,-30,-28,-26, 8,26,-4,-18, -15,3,5,-25, -23,-5,29,-17} (unpacked by hand from the layout rules).
  uint8_t b[110];
  for (int k = 0; k < 32; ++k) b[k] = (uint8_t)(k * 3);
  for (int k = 0; k < 64; ++k) b[32 + k] = (uint8_t)((k * 5 + 1) & 0xFF);
  const uint8_t sc[12] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x1B, 0x6C, 0xE4, 0x00};
  std::memcpy(b + 96, sc, 12);
  qimpl::wr16(b + 108, 0x3800);
  float y[256];
  dequantize_row(DType::Q3_K, b, y, 256);
  // q = low2 - (hbit ? 0 : 4), low2 = (qs[32h+16g+l] >> 2j) & 3, hbit = (hmask[16g+l] >> (4h+j)) & 1
  EXPECT_EQ(y[0], -24.f);    // low2 1, hbit 0 -> -3; scale 16
  EXPECT_EQ(y[37], -28.f);   // qs[5]=26 -> 2, hmask[5]=15 bit1 = 1 -> 2; scale[2] = -28
  EXPECT_EQ(y[72], -8.f);    // qs[8]=41 -> 2, hmask[8]=24 bit2 = 0 -> -2; scale[4] = 8
  EXPECT_EQ(y[144], 1.5f);   // h1 g1 l0: qs[48]=241 -> 1, hmask[16]=48 bit4 = 1 -> 1; scale[9] = 3
  EXPECT_EQ(y[191], 12.5f);  // h1 j1 g1 l15: qs[63]=60 -> 3, hmask[31]=93 bit5 = 0 -> -1; scale[11] = -25
  EXPECT_EQ(y[215], -2.5f);  // h1 j2 g1 l7: qs[55]=20 -> 1, hmask[23]=69 bit6 = 1 -> 1; scale[13] = -5
  EXPECT_EQ(y[250], 34.f);   // h1 j3 g1 l10: qs[58]=35 -> 0, hmask[26]=78 bit7 = 0 -> -4; scale[15] = -17
}

// ---- round trips ------------------------------------------------------------------------------------------------

TEST(quant, roundtrip_error_gaussian) {
  for (const TypeBound& tb : kQuantTypes) {
    for (int64_t n : lengths_for(tb.t)) {
      for (uint32_t seed : {1u, 2u}) {
        std::vector<float> x = gaussian((size_t)n, seed + (uint32_t)n);
        std::vector<uint8_t> q(dtype_row_bytes(tb.t, n));
        quantize_row(tb.t, x.data(), q.data(), n);
        std::vector<uint8_t> qr(q.size());
        quantize_row_ref(tb.t, x.data(), qr.data(), n);
        EXPECT_TRUE(q == qr);
        std::vector<float> y((size_t)n);
        dequantize_row(tb.t, q.data(), y.data(), n);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; ++i) {
          num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
          den += (double)x[i] * x[i];
        }
        double rel = std::sqrt(num / den);
        if (!(rel <= tb.rel_rms))
          SDN_FAIL(dtype_name(tb.t) << " n=" << n << ": relative RMS error " << rel << " > " << tb.rel_rms);
      }
    }
  }
}

TEST(quant, roundtrip_scaled_and_special_rows) {
  // Different magnitudes, an all-zero block, a constant block, all-positive and all-negative blocks:
  // relative error stays bounded and zeros stay exactly zero.
  for (const TypeBound& tb : kQuantTypes) {
    const int64_t n = dtype_traits(tb.t).block_size >= 256 ? 1024 : 256;
    std::vector<float> x = gaussian((size_t)n, 99, 1e-3f);
    for (int64_t i = 0; i < n / 4; ++i) x[(size_t)i] = 0.f;                         // zero block(s)
    for (int64_t i = n / 4; i < n / 2; ++i) x[(size_t)i] = std::fabs(x[(size_t)i]) * 300.f + 0.05f;  // positive
    for (int64_t i = n / 2; i < 3 * n / 4; ++i) x[(size_t)i] = -std::fabs(x[(size_t)i]) * 7.f;  // negative
    std::vector<uint8_t> q(dtype_row_bytes(tb.t, n));
    quantize_row(tb.t, x.data(), q.data(), n);
    std::vector<float> y((size_t)n);
    dequantize_row(tb.t, q.data(), y.data(), n);
    for (int64_t i = 0; i < n / 4; ++i) EXPECT_EQ(y[(size_t)i], 0.f);
    for (int part = 1; part < 4; ++part) {
      double num = 0, den = 0;
      for (int64_t i = part * n / 4; i < (part + 1) * n / 4; ++i) {
        num += ((double)y[(size_t)i] - x[(size_t)i]) * ((double)y[(size_t)i] - x[(size_t)i]);
        den += (double)x[(size_t)i] * x[(size_t)i];
      }
      double rel = std::sqrt(num / den);
      // one-signed blocks use the range less well for the symmetric formats: allow 2x
      if (!(rel <= 2 * tb.rel_rms + 1e-7))
        SDN_FAIL(dtype_name(tb.t) << " part " << part << ": relative RMS error " << rel);
    }
  }
}

// ---- dot products -------------------------------------------------------------------------------------------------

TEST(quant, dot_matches_double_dot_of_dequantized) {
  LevelGuard g;
  for (SimdLevel lv : levels()) {
    simd_set_level(lv);
    for (DType t : kReadTypes) {
      for (int64_t n : lengths_for(t)) {
        std::vector<uint8_t> w = random_encoded(t, n, 1234u + (uint32_t)n);
        std::vector<float> x = sdntest::random_vector((size_t)n, 55u + (uint32_t)n);
        std::vector<float> y((size_t)n);
        dequantize_row_ref(t, w.data(), y.data(), n);
        double exact = 0;
        for (int64_t i = 0; i < n; ++i) exact += (double)y[(size_t)i] * x[(size_t)i];
        const double tol = dot_tol(y.data(), x.data(), n);
        float got = dot_row(t, w.data(), x.data(), n);
        float ref = dot_row_ref(t, w.data(), x.data(), n);
        if (!(std::fabs(got - exact) <= tol))
          SDN_FAIL(simd_name(lv) << " " << dtype_name(t) << " n=" << n << ": dot " << got << " vs " << exact);
        if (!(std::fabs(ref - exact) <= tol))
          SDN_FAIL(dtype_name(t) << " n=" << n << ": dot_ref " << ref << " vs " << exact);
      }
    }
  }
}

TEST(quant, dot_of_quantized_gaussian_rows) {
  LevelGuard g;
  for (SimdLevel lv : levels()) {
    simd_set_level(lv);
    for (const TypeBound& tb : kQuantTypes) {
      const int64_t n = 256 * 3;
      std::vector<float> xw = gaussian((size_t)n, 5), x = gaussian((size_t)n, 6);
      std::vector<uint8_t> w(dtype_row_bytes(tb.t, n));
      quantize_row(tb.t, xw.data(), w.data(), n);
      std::vector<float> y((size_t)n);
      dequantize_row_ref(tb.t, w.data(), y.data(), n);
      double exact = 0;
      for (int64_t i = 0; i < n; ++i) exact += (double)y[(size_t)i] * x[(size_t)i];
      float got = dot_row(tb.t, w.data(), x.data(), n);
      EXPECT_NEAR(got, exact, dot_tol(y.data(), x.data(), n));
    }
  }
}

// ---- SIMD levels against the reference ---------------------------------------------------------------------------

TEST(quant, dequantize_every_level_bit_exact) {
  LevelGuard g;
  for (SimdLevel lv : levels()) {
    simd_set_level(lv);
    for (DType t : kReadTypes) {
      for (int64_t n : lengths_for(t)) {
        std::vector<uint8_t> w = random_encoded(t, n, 77u + (uint32_t)n);
        std::vector<float> a((size_t)n), b((size_t)n);
        dequantize_row_ref(t, w.data(), a.data(), n);
        dequantize_row(t, w.data(), b.data(), n);
        size_t where = 0;
        if (!bits_equal(a.data(), b.data(), (size_t)n, &where))
          SDN_FAIL(simd_name(lv) << " " << dtype_name(t) << " n=" << n << " differs at " << where << ": "
                                 << b[where] << " vs ref " << a[where]);
      }
    }
  }
}

TEST(quant, dequantize_rows_strided_with_column_offset) {
  LevelGuard g;
  for (SimdLevel lv : levels()) {
    simd_set_level(lv);
    for (DType t : kReadTypes) {
      const int bs = dtype_traits(t).block_size;
      const int64_t full = bs == 1 ? 37 : 3 * bs, rows = 5, k0 = bs, cols = full - bs;
      const size_t rb = dtype_row_bytes(t, full);
      std::vector<uint8_t> w = random_encoded(t, full * rows, 3u);
      const int64_t stride = cols + 3;
      std::vector<float> out((size_t)(rows * stride), -7.f);
      dequantize_rows(t, w.data() + dtype_row_bytes(t, k0), rb, rows, cols, out.data(), stride);
      std::vector<float> ref((size_t)full);
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row_ref(t, w.data() + r * rb, ref.data(), full);
        size_t where = 0;
        if (!bits_equal(out.data() + r * stride, ref.data() + k0, (size_t)cols, &where))
          SDN_FAIL(simd_name(lv) << " " << dtype_name(t) << " row " << r << " col " << where);
        for (int64_t c = cols; c < stride; ++c) EXPECT_EQ(out[(size_t)(r * stride + c)], -7.f);
      }
    }
  }
}

TEST(quant, integer_and_f64_rows_convert) {
  const int8_t a[3] = {-128, 0, 127};
  const int16_t b[3] = {-32768, 5, 32767};
  const int32_t c[3] = {-7, 1 << 24, 123456};
  const int64_t d[3] = {-1, 0, (int64_t)1 << 40};
  const double e[3] = {0.5, -1e300, 3.25};
  float y[3];
  dequantize_row(DType::I8, a, y, 3);
  EXPECT_EQ(y[0], -128.f);
  EXPECT_EQ(y[2], 127.f);
  dequantize_row(DType::I16, b, y, 3);
  EXPECT_EQ(y[0], -32768.f);
  EXPECT_EQ(y[1], 5.f);
  dequantize_row(DType::I32, c, y, 3);
  EXPECT_EQ(y[1], 16777216.f);
  EXPECT_EQ(y[2], 123456.f);
  dequantize_row(DType::I64, d, y, 3);
  EXPECT_EQ(y[2], 1099511627776.f);
  dequantize_row(DType::F64, e, y, 3);
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_TRUE(std::isinf(y[1]) && y[1] < 0);
  const float x[3] = {0.5f, 2.f, 3.25f};
  EXPECT_NEAR(dot_row(DType::I8, a, x, 3), -128.0 * 0.5 + 127.0 * 3.25, 1e-4);
  EXPECT_NEAR(dot_row(DType::I16, b, x, 3), -32768.0 * 0.5 + 10.0 + 32767.0 * 3.25, 1e-2);
}

// ---- error paths ------------------------------------------------------------------------------------------------

TEST(quant, bad_lengths_and_types_throw) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> f(1024, 1.f);
  EXPECT_THROWS_CODE(quantize_row(DType::Q4_0, f.data(), buf.data(), 31), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(dequantize_row(DType::Q4_K, buf.data(), f.data(), 100), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(dot_row(DType::Q8_0, buf.data(), f.data(), 48), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(dequantize_row(DType::F16, buf.data(), f.data(), -1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(dequantize_rows(DType::Q6_K, buf.data(), 210, 2, 255, f.data(), 256),
                     ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(dequantize_rows(DType::F32, buf.data(), 64, 2, 16, f.data(), 8), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(quantize_row_ref(DType::Q5_1, f.data(), buf.data(), 33), ErrorCode::InvalidArgument);
  // unknown / unsupported types
  EXPECT_THROWS_CODE(dequantize_row((DType)5, buf.data(), f.data(), 32), ErrorCode::Unsupported);
  EXPECT_THROWS_CODE(dequantize_row((DType)16, buf.data(), f.data(), 256), ErrorCode::Unsupported);  // iq2_xxs
  EXPECT_THROWS_CODE(dot_row(DType::Invalid, buf.data(), f.data(), 32), ErrorCode::Unsupported);
  EXPECT_THROWS_CODE(quantize_row(DType::I8, f.data(), buf.data(), 32), ErrorCode::Unsupported);
  EXPECT_THROWS_CODE(quantize_row((DType)23, f.data(), buf.data(), 256), ErrorCode::Unsupported);
  EXPECT_THROWS_CODE(dequantize_rows((DType)99, buf.data(), 0, 1, 32, f.data(), 32), ErrorCode::Unsupported);
  try {
    dequantize_row((DType)99, buf.data(), f.data(), 32);
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).find("99") != std::string::npos);
  }
  try {
    quantize_row(DType::I16, f.data(), buf.data(), 32);
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).find("i16") != std::string::npos);
  }
  // n = 0 is a valid empty row
  quantize_row(DType::Q4_K, f.data(), buf.data(), 0);
  EXPECT_EQ(dot_row(DType::Q4_K, buf.data(), f.data(), 0), 0.f);
}

TEST(quant, quantize_same_bytes_at_every_level) {
  // The K-quant scale searches run vectorised; every level must write the bytes of the scalar reference.
  LevelGuard g;
  std::vector<float> x = gaussian(256 * 9, 321);
  for (size_t i = 0; i < 256; ++i) x[i] *= 1e-4f;           // tiny block
  for (size_t i = 256; i < 512; ++i) x[i] = std::fabs(x[i]);  // one-signed block
  for (size_t i = 512; i < 544; ++i) x[i] = 0.f;              // zero sub-blocks
  for (size_t i = 768; i < 800; ++i) x[i] = (float)(i % 7) - 3.f;  // exact small integers (ties)
  for (const TypeBound& tb : kQuantTypes) {
    const int64_t n = (int64_t)x.size();
    std::vector<uint8_t> ref(dtype_row_bytes(tb.t, n)), got(ref.size());
    quantize_row_ref(tb.t, x.data(), ref.data(), n);
    for (SimdLevel lv : levels()) {
      simd_set_level(lv);
      quantize_row(tb.t, x.data(), got.data(), n);
      for (size_t i = 0; i < ref.size(); ++i)
        if (got[i] != ref[i]) SDN_FAIL(simd_name(lv) << " " << dtype_name(tb.t) << " byte " << i << " differs");
    }
  }
}

TEST(quant, non_finite_inputs_do_not_crash_or_leak_into_other_blocks) {
  // NaN/Inf in one block give unspecified (but in-format) codes for that block; other blocks are unaffected.
  for (const TypeBound& tb : kQuantTypes) {
    const int bs = dtype_traits(tb.t).block_size;
    const int64_t n = bs == 1 ? 64 : 4 * (int64_t)bs;
    std::vector<float> x = gaussian((size_t)n, 8);
    std::vector<float> clean(x.begin() + n / 2, x.end());
    x[1] = std::nanf("");
    x[2] = INFINITY;
    x[3] = -INFINITY;
    std::vector<uint8_t> q(dtype_row_bytes(tb.t, n)), qc(dtype_row_bytes(tb.t, n / 2));
    quantize_row(tb.t, x.data(), q.data(), n);
    quantize_row(tb.t, clean.data(), qc.data(), n / 2);
    const size_t half = dtype_row_bytes(tb.t, n / 2);
    for (size_t i = 0; i < half; ++i) EXPECT_EQ((int)q[half + i], (int)qc[i]);
    std::vector<float> y((size_t)n);
    dequantize_row(tb.t, q.data(), y.data(), n);  // must not crash
  }
}

TEST(quant, f16_bf16_quantize_special_values_every_level) {
  // Bit patterns of every class (normal, subnormal, zero, inf, NaN, round-to-nearest ties, overflow to inf):
  // each level writes the bytes of the scalar conversions.
  LevelGuard g;
  std::vector<float> x;
  std::mt19937 gen(5);
  for (int i = 0; i < 4000; ++i) {
    uint32_t u = gen();
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                               0xffc12345u, 0x00000001u, 0x807fffffu, 0x33000000u, 0x33000001u, 0x387fe000u,
                               0x38800000u, 0x477fe000u, 0x477ff000u, 0x477fefffu, 0x3f808000u, 0x3f818000u,
                               0x3f801000u, 0x3f803000u, 0x7f7fffffu, 0xc77ff000u};
  for (uint32_t u : specials) {
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  auto sc = sdntest::random_vector(3001, 9, -70000.f, 70000.f);
  x.insert(x.end(), sc.begin(), sc.end());
  const int64_t n = (int64_t)x.size();
  for (DType t : {DType::F16, DType::BF16}) {
    std::vector<uint16_t> ref((size_t)n), got((size_t)n);
    for (int64_t i = 0; i < n; ++i) ref[(size_t)i] = t == DType::F16 ? f32_to_f16(x[(size_t)i]) : f32_to_bf16(x[(size_t)i]);
    for (SimdLevel lv : levels()) {
      simd_set_level(lv);
      quantize_row(t, x.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i)
        if (got[(size_t)i] != ref[(size_t)i])
          SDN_FAIL(simd_name(lv) << " " << dtype_name(t) << " element " << i << ": " << std::hex << got[(size_t)i]
                                 << " vs " << ref[(size_t)i]);
    }
  }
}

TEST(quant, q8_0_q4_0_quantize_ties_every_level) {
  // Values landing exactly on .5 after scaling, and the largest magnitude appearing with both signs: every level
  // must round and choose the sign of d like the reference.
  LevelGuard g;
  std::vector<float> x(32 * 64);
  std::mt19937 gen(11);
  for (size_t b = 0; b < 64; ++b)
    for (size_t i = 0; i < 32; ++i) {
      float v = (float)((int)(gen() % 255) - 127) * 0.5f;  // multiples of 0.5 -> many exact ties
      if (b % 3 == 0 && i == 5) v = 64.f;
      if (b % 3 == 0 && i == 9) v = -64.f;  // same magnitude as element 5, opposite sign
      x[b * 32 + i] = v;
    }
  x[7] = 0.49999997f;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const int64_t n = (int64_t)x.size();
    std::vector<uint8_t> ref(dtype_row_bytes(t, n)), got(ref.size());
    quantize_row_ref(t, x.data(), ref.data(), n);
    for (SimdLevel lv : levels()) {
      simd_set_level(lv);
      quantize_row(t, x.data(), got.data(), n);
      for (size_t i = 0; i < ref.size(); ++i)
        if (got[i] != ref[i]) SDN_FAIL(simd_name(lv) << " " << dtype_name(t) << " byte " << i << " differs");
    }
  }
}

TEST(quant, huge_values_saturate_without_nan_in_k_quants) {
  std::vector<float> x = gaussian(256, 4, 1e9f);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> q(dtype_row_bytes(t, 256));
    quantize_row(t, x.data(), q.data(), 256);
    std::vector<float> y(256);
    dequantize_row(t, q.data(), y.data(), 256);
    for (float v : y) EXPECT_TRUE(std::isfinite(v));
  }
}
