// Seeded Gaussian noise that reproduces PyTorch's generators (see ENGINE-FACTS section 7).
#include <cmath>
#include <cstring>

#include "samplers/sampling.h"
#include "sdn/error.h"

namespace sdn {
namespace {

// torch.randn on a CUDA generator (Philox4x32-10, curand-style Box-Muller), as A1111's GPU/NV noise and the
// reference engine's "cuda" rng emulate it: element i of one call uses counter (offset, 0, lo32(i), hi32(i)) and
// key (lo32(seed), hi32(seed)); each call advances the offset by one.
class PhiloxNoise final : public NoiseGenerator {
 public:
  explicit PhiloxNoise(uint64_t seed) : seed_(seed) {}

  void randn(float* out, int64_t n) override {
    if (n < 0) throw_error(ErrorCode::InvalidArgument, "randn: negative element count");
    const uint32_t k0 = (uint32_t)seed_, k1 = (uint32_t)(seed_ >> 32);
    for (int64_t i = 0; i < n; i++) {
      uint32_t r[4];
      philox(offset_, 0, (uint32_t)(uint64_t)i, (uint32_t)((uint64_t)i >> 32), k0, k1, r);
      out[i] = box_muller(r[0], r[1]);
    }
    offset_++;
  }

  static void philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t* r) {
    for (int round = 0; round < 10; round++) {
      uint64_t p0 = (uint64_t)0xD2511F53u * c0;
      uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
      uint32_t n1 = (uint32_t)p1;
      uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
      uint32_t n3 = (uint32_t)p0;
      c0 = n0, c1 = n1, c2 = n2, c3 = n3;
      if (round < 9) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    }
    r[0] = c0, r[1] = c1, r[2] = c2, r[3] = c3;
  }

  // All in float32, like curand and the emulations: u in (0, 1], v in (0, 2pi].
  static float box_muller(uint32_t a, uint32_t b) {
    const float two_pow32_inv = 2.3283064e-10f;
    const float two_pow32_inv_2pi = 2.3283064e-10f * 6.2831855f;
    float u = (float)a * two_pow32_inv + two_pow32_inv / 2;
    float v = (float)b * two_pow32_inv_2pi + two_pow32_inv_2pi / 2;
    float s = std::sqrt(-2.0f * std::log(u));
    return s * std::sin(v);
  }

 private:
  uint64_t seed_;
  uint32_t offset_ = 0;
};

// torch.randn on the CPU generator (MT19937). n >= 16: 24-bit float uniforms, Box-Muller over groups of 16
// (the tail recomputed from 16 fresh uniforms); n < 16: the double-precision path with a cached second value.
class Mt19937Noise final : public NoiseGenerator {
 public:
  explicit Mt19937Noise(uint64_t seed) {
    mt_[0] = (uint32_t)seed;
    for (int j = 1; j < kN; j++) mt_[j] = 1812433253u * (mt_[j - 1] ^ (mt_[j - 1] >> 30)) + (uint32_t)j;
    idx_ = kN;  // the first draw twists
  }

  void randn(float* out, int64_t n) override {
    if (n < 0) throw_error(ErrorCode::InvalidArgument, "randn: negative element count");
    if (n >= 16) {
      for (int64_t i = 0; i < n; i++) out[i] = uniform24();
      for (int64_t o = 0; o + 16 <= n; o += 16) fill16(out + o);
      if (n % 16 != 0) {
        float* tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform24();
        fill16(tail);
      }
    } else {
      for (int64_t i = 0; i < n; i++) out[i] = (float)normal_double();
    }
  }

 private:
  static constexpr int kN = 624, kM = 397;
  uint32_t mt_[kN];
  int idx_;
  bool has_cached_ = false;
  double cached_ = 0;

  void twist() {
    for (int k = 0; k < kN; k++) {
      uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % kN] & 0x7FFFFFFFu);
      mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908B0DFu : 0u);
    }
    idx_ = 0;
  }
  uint32_t next_u32() {
    if (idx_ >= kN) twist();
    uint32_t y = mt_[idx_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
  }
  float uniform24() { return (float)(next_u32() & 0xFFFFFFu) * (1.0f / 16777216.0f); }
  double uniform53() {
    uint64_t hi = next_u32();
    uint64_t lo = next_u32();
    uint64_t v = (hi << 32) | lo;
    return (double)(v & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
  }
  double normal_double() {
    if (has_cached_) {
      has_cached_ = false;
      return cached_;
    }
    double u1 = uniform53();
    double u2 = uniform53();
    double r = std::sqrt(-2.0 * std::log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    cached_ = r * std::sin(theta);
    has_cached_ = true;
    return r * std::cos(theta);
  }
  static void fill16(float* d) {
    for (int j = 0; j < 8; j++) {
      float u1 = 1.0f - d[j];
      float u2 = d[j + 8];
      float r = std::sqrt(-2.0f * std::log(u1));
      float theta = 2.0f * 3.14159265358979323846f * u2;
      d[j] = r * std::cos(theta);
      d[j + 8] = r * std::sin(theta);
    }
  }
};

}  // namespace

std::unique_ptr<NoiseGenerator> make_noise_generator(const std::string& name, uint64_t seed) {
  if (name == "cuda" || name == "philox") return std::make_unique<PhiloxNoise>(seed);
  if (name == "cpu") return std::make_unique<Mt19937Noise>(seed);
  throw_error(ErrorCode::InvalidArgument,
              "unknown noise generator '" + name + "' (use \"cuda\"/\"philox\" for GPU seeds or \"cpu\")");
}

}  // namespace sdn
