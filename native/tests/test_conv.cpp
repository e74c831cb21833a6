// conv2d (im2col + GEMM, Winograd) against a direct double-precision convolution.
// Tolerances (relative to the sum of |terms| of each output, plus 1e-6 absolute):
//   im2col 1e-5 (plain f32 accumulation); Winograd F(4x4,3x3) 1e-4 (transforms add a few roundings of values up to
//   ~10x the inputs).
#include <vector>

#include "backends/cpu/gemm.h"
#include "kernel_test_util.h"
#include "sdn/error.h"

using namespace sdn;
using namespace sdntest;

namespace {

struct ConvCase {
  int64_t b, c, h, w, oc, ks;
  int stride, pad;
  bool bias;
};

void run_conv_case(DType t, const ConvCase& cc, cpu::ConvAlgo algo, uint32_t seed) {
  const int64_t K = cc.c * cc.ks * cc.ks;
  std::vector<float> xv = random_vector((size_t)(cc.b * cc.c * cc.h * cc.w), seed);
  Tensor x = Tensor::from_vector({cc.b, cc.c, cc.h, cc.w}, xv);
  std::vector<float> wd;
  Tensor w = make_weight(t, {cc.oc, cc.c, cc.ks, cc.ks}, cc.oc, K, seed + 1, &wd);
  std::vector<float> bv = random_vector((size_t)cc.oc, seed + 2);
  Tensor b = Tensor::from_vector({cc.oc}, bv);
  const int64_t oh = (cc.h + 2 * cc.pad - cc.ks) / cc.stride + 1, ow = (cc.w + 2 * cc.pad - cc.ks) / cc.stride + 1;
  std::vector<double> ref((size_t)(cc.b * cc.oc * oh * ow)), scale(ref.size());
  for (int64_t n = 0; n < cc.b; ++n)
    for (int64_t o = 0; o < cc.oc; ++o)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xq = 0; xq < ow; ++xq) {
          double s = cc.bias ? bv[o] : 0.0, sa = cc.bias ? std::fabs(bv[o]) : 0.0;
          for (int64_t c = 0; c < cc.c; ++c)
            for (int64_t i = 0; i < cc.ks; ++i)
              for (int64_t j = 0; j < cc.ks; ++j) {
                int64_t iy = y * cc.stride - cc.pad + i, ix = xq * cc.stride - cc.pad + j;
                if (iy < 0 || iy >= cc.h || ix < 0 || ix >= cc.w) continue;
                double p = (double)xv[((n * cc.c + c) * cc.h + iy) * cc.w + ix] * wd[(o * cc.c + c) * cc.ks * cc.ks + i * cc.ks + j];
                s += p;
                sa += std::fabs(p);
              }
          size_t idx = (size_t)(((n * cc.oc + o) * oh + y) * ow + xq);
          ref[idx] = s;
          scale[idx] = sa;
        }
  const double rel = algo == cpu::ConvAlgo::Winograd ? 1e-4 : 1e-5;
  std::string what = std::string("conv2d ") + dtype_name(t) + " B=" + std::to_string(cc.b) + " C=" +
                     std::to_string(cc.c) + " " + std::to_string(cc.h) + "x" + std::to_string(cc.w) + " OC=" +
                     std::to_string(cc.oc) + " k" + std::to_string(cc.ks) + " s" + std::to_string(cc.stride) + " p" +
                     std::to_string(cc.pad) + " algo " + std::to_string((int)algo) + " at " + simd_name(simd_level());
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    set_default_threads(threads);
    Tensor out = cpu::conv2d_with(x, w, cc.bias ? &b : nullptr, cc.stride, cc.pad, algo);
    EXPECT_EQ(out.shape[0], cc.b);
    EXPECT_EQ(out.shape[1], cc.oc);
    EXPECT_EQ(out.shape[2], oh);
    EXPECT_EQ(out.shape[3], ow);
    expect_close_scaled(out.f32(), ref, scale, rel, 1e-6, what + " threads=" + std::to_string(threads));
    if (threads == 1)
      first.assign(out.f32(), out.f32() + out.numel());
    else if (std::memcmp(first.data(), out.f32(), first.size() * 4) != 0)
      SDN_FAIL(what << ": 1 and " << threads << " threads differ");
  }
}

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 0, true},   {1, 3, 3, 5, 5, 3, 1, 1, true},    {2, 3, 5, 3, 5, 3, 2, 1, false},
      {2, 4, 7, 9, 5, 3, 2, 0, true},   {1, 5, 3, 5, 3, 3, 1, 0, true},    {1, 7, 8, 8, 9, 1, 1, 0, false},
      {2, 3, 5, 7, 4, 1, 2, 0, true},   {1, 3, 6, 6, 2, 1, 1, 1, true},    {1, 16, 9, 11, 33, 3, 1, 1, true},
      {1, 20, 13, 12, 17, 3, 2, 1, true}, {2, 3, 1, 1, 5, 3, 1, 1, true},  {1, 2, 3, 3, 3, 3, 1, 0, false},
      {1, 40, 17, 10, 36, 3, 1, 1, true}, {2, 6, 11, 13, 7, 3, 1, 0, true},
      // channel counts whose rows (C*KH*KW) are whole quant blocks: 32 (1x1), 32*9 = 288 (3x3), 256*9 (K-quants)
      {1, 32, 5, 7, 6, 3, 1, 1, true},  {2, 32, 6, 5, 9, 3, 2, 1, true},   {1, 64, 3, 4, 5, 1, 1, 0, true},
      {1, 256, 4, 5, 3, 3, 1, 1, true},  {1, 256, 3, 3, 4, 1, 2, 0, false},
      // more than 160 output pixels (im2col GEMM row-panel path)
      {1, 8, 20, 21, 10, 3, 1, 1, true}, {2, 5, 27, 26, 6, 3, 2, 1, true}, {1, 32, 14, 13, 7, 1, 1, 0, false},
  };
  return cases;
}

}  // namespace

TEST(conv, im2col_all_types_levels_threads) {
  KernelEnvGuard guard;
  uint32_t seed = 500;
  for (SimdLevel level : simd_levels()) {
    EXPECT_TRUE(simd_set_level(level));
    for (DType t : kernel_weight_types())
      for (const auto& cc : conv_cases())
        if (type_fits(t, cc.c * cc.ks * cc.ks)) run_conv_case(t, cc, cpu::ConvAlgo::Im2col, seed += 11);
  }
}

TEST(conv, winograd_all_types_levels_threads) {
  KernelEnvGuard guard;
  uint32_t seed = 700;
  for (SimdLevel level : simd_levels()) {
    EXPECT_TRUE(simd_set_level(level));
    for (DType t : kernel_weight_types())
      for (const auto& cc : conv_cases())
        if (cc.ks == 3 && cc.stride == 1 && type_fits(t, cc.c * 9))
          run_conv_case(t, cc, cpu::ConvAlgo::Winograd, seed += 13);
  }
}

TEST(conv, winograd_larger_shapes) {
  // Several tile-row blocks, channel chunks (C > 384) and output-channel groups; ragged right/bottom tiles.
  KernelEnvGuard guard;
  const std::vector<ConvCase> cases = {{1, 400, 6, 7, 70, 3, 1, 1, true}, {2, 24, 37, 29, 40, 3, 1, 1, true},
                                       {1, 9, 70, 66, 3, 3, 1, 0, false}, {1, 256, 40, 37, 9, 3, 1, 1, true},
                                       {2, 1024, 20, 64, 3, 3, 1, 1, true}};  // blocks span both images
  uint32_t seed = 800;
  for (SimdLevel level : simd_levels()) {
    EXPECT_TRUE(simd_set_level(level));
    for (const auto& cc : cases) run_conv_case(DType::F16, cc, cpu::ConvAlgo::Winograd, seed += 3);
  }
}

TEST(conv, auto_algo) {
  KernelEnvGuard guard;
  uint32_t seed = 900;
  for (const auto& cc : conv_cases()) run_conv_case(DType::F16, cc, cpu::ConvAlgo::Auto, seed += 5);
}

TEST(conv, rejects_bad_input) {
  Tensor x = Tensor::from_vector({1, 2, 4, 4}, random_vector(32, 1));
  Tensor w = Tensor::from_vector({3, 2, 3, 3}, random_vector(54, 2));
  EXPECT_THROWS_CODE(cpu::conv2d(x, w, nullptr, 3, 1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(cpu::conv2d(x, w, nullptr, 1, 2), ErrorCode::InvalidArgument);
  Tensor w2 = Tensor::from_vector({3, 5, 3, 3}, random_vector(135, 2));
  EXPECT_THROWS_CODE(cpu::conv2d(x, w2, nullptr, 1, 1), ErrorCode::InvalidArgument);
  Tensor w3 = Tensor::from_vector({3, 2, 5, 5}, random_vector(150, 2));
  EXPECT_THROWS_CODE(cpu::conv2d(x, w3, nullptr, 1, 1), ErrorCode::InvalidArgument);
  Tensor tiny = Tensor::from_vector({1, 2, 1, 1}, random_vector(2, 1));
  EXPECT_THROWS_CODE(cpu::conv2d(tiny, w, nullptr, 1, 0), ErrorCode::InvalidArgument);
  Tensor b = Tensor::from_vector({2}, random_vector(2, 1));
  EXPECT_THROWS_CODE(cpu::conv2d(x, w, &b, 1, 1), ErrorCode::InvalidArgument);
}
