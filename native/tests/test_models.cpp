// SD model components on in-memory tiny weights (tiny_sd.h): shapes, determinism across thread counts,
// batch independence, clip skip, weight conversion on load.
#include <cmath>
#include <cstring>

#include "backends/backend.h"
#include "core/quant.h"
#include "core/threadpool.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/weights.h"
#include "sdn/error.h"
#include "test.h"
#include "tiny_sd.h"

using namespace sdn;

namespace {

Tensor random_tensor(const std::vector<int64_t>& shape, uint32_t seed, float scale = 1.f) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  auto v = sdntest::random_vector((size_t)n, seed, -scale, scale);
  return Tensor::from_vector(shape, v);
}

double max_abs_diff(const Tensor& a, const Tensor& b, size_t offset_b = 0) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, (double)std::fabs(a.f32()[i] - b.f32()[offset_b + i]));
  return m;
}
double max_abs(const Tensor& a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, (double)std::fabs(a.f32()[i]));
  return m;
}
bool all_finite(const Tensor& a) {
  for (int64_t i = 0; i < a.numel(); ++i)
    if (!std::isfinite(a.f32()[i])) return false;
  return true;
}

struct ThreadsGuard {
  int saved = default_threads();
  ~ThreadsGuard() { set_default_threads(saved); }
};

}  // namespace

TEST(models, unet_shapes_and_layout) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  UNetModel unet(w);
  EXPECT_EQ(unet.in_channels(), 4);
  EXPECT_EQ(unet.model_channels(), 32);
  EXPECT_EQ(unet.context_dim(), 64);
  EXPECT_EQ(unet.size_multiple(), 2);
  Tensor x = random_tensor({1, 4, 6, 10}, 1);
  Tensor ctx = random_tensor({1, 77, 64}, 2);
  Tensor y = unet.forward(x, {500.5f}, ctx);
  EXPECT_EQ(y.shape_str(), std::string("[1, 4, 6, 10] f32"));
  EXPECT_TRUE(all_finite(y));
  EXPECT_TRUE(max_abs(y) > 1e-3);
  // odd latent sizes are rejected with InvalidArgument, not a crash
  EXPECT_THROWS_CODE(unet.forward(random_tensor({1, 4, 5, 10}, 3), {1.f}, ctx), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(unet.forward(x, {1.f}, random_tensor({1, 77, 32}, 4)), ErrorCode::InvalidArgument);
}

TEST(models, unet_batch2_equals_two_batch1) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  UNetModel unet(w);
  Tensor x = random_tensor({2, 4, 8, 6}, 5);
  Tensor ctx = random_tensor({2, 154, 64}, 6);  // two chunks of tokens
  Tensor y = unet.forward(x, {700.f, 12.25f}, ctx);
  for (int b = 0; b < 2; ++b) {
    Tensor yb = unet.forward(x.slice0(b, b + 1), {b == 0 ? 700.f : 12.25f}, ctx.slice0(b, b + 1));
    double d = max_abs_diff(yb, y, (size_t)b * yb.numel());
    if (d > 1e-4 * std::max(1.0, max_abs(yb))) SDN_FAIL("batch item " << b << " differs by " << d);
  }
}

TEST(models, unet_same_result_1_and_n_threads) {
  ThreadsGuard g;
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  UNetModel unet(w);
  Tensor x = random_tensor({2, 4, 8, 8}, 7);
  Tensor ctx = random_tensor({2, 77, 64}, 8);
  set_default_threads(1);
  Tensor y1 = unet.forward(x, {999.f, 0.f}, ctx).contiguous();
  set_default_threads(3);
  Tensor yn = unet.forward(x, {999.f, 0.f}, ctx).contiguous();
  double d = max_abs_diff(y1, yn);
  if (d > 1e-5 * std::max(1.0, max_abs(y1))) SDN_FAIL("1 vs 3 threads differ by " << d);
}

TEST(models, unet_context_cache_matches_uncached) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  UNetModel unet(w);
  Tensor x = random_tensor({1, 4, 4, 4}, 9);
  Tensor ctx = random_tensor({1, 77, 64}, 10);
  UNetContextCache cache;
  Tensor a = unet.forward(x, {300.f}, ctx).contiguous();
  Tensor b = unet.forward(x, {300.f}, ctx, &cache).contiguous();
  Tensor c = unet.forward(x, {300.f}, ctx, &cache).contiguous();  // from the cache
  EXPECT_TRUE(!cache.kv.empty());
  EXPECT_TRUE(max_abs_diff(a, b) == 0);
  EXPECT_TRUE(max_abs_diff(a, c) == 0);
}

TEST(models, clip_encode_and_clip_skip) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  ClipTextModel clip(w);
  EXPECT_EQ(clip.layers(), 3);
  EXPECT_EQ(clip.width(), 64);
  std::vector<int> ids(2 * 77, 521);
  ids[0] = ids[77] = 520;
  ids[1] = 100;
  ids[78] = 200;
  Tensor z1 = clip.encode(ids, 2, 1).contiguous();
  EXPECT_EQ(z1.shape_str(), std::string("[2, 77, 64] f32"));
  EXPECT_TRUE(all_finite(z1));
  Tensor z2 = clip.encode(ids, 2, 2).contiguous();
  EXPECT_TRUE(max_abs_diff(z1, z2) > 1e-3);
  // causal: position 0 only sees itself, so it does not depend on later tokens
  std::vector<int> ids2 = ids;
  ids2[5] = 300;
  Tensor z3 = clip.encode(ids2, 2, 1).contiguous();
  for (int d = 0; d < 64; ++d) EXPECT_TRUE(z3.f32()[d] == z1.f32()[d]);
  bool changed = false;
  for (int d = 0; d < 64; ++d) changed = changed || z3.f32()[5 * 64 + d] != z1.f32()[5 * 64 + d];
  EXPECT_TRUE(changed);
  // the final LayerNorm is applied: each token row has ~zero mean before the affine (gamma ~1, beta small)
  EXPECT_THROWS_CODE(clip.encode(ids, 2, 4), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(clip.encode(ids, 2, 0), ErrorCode::InvalidArgument);
  std::vector<int> bad = ids;
  bad[3] = 100000;
  EXPECT_THROWS_CODE(clip.encode(bad, 2, 1), ErrorCode::InvalidArgument);
}

TEST(models, vae_decode_encode_shapes) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  VaeModel vae(w);
  Tensor z = random_tensor({1, 4, 3, 5}, 11);
  Tensor img = vae.decode(z).contiguous();
  EXPECT_EQ(img.shape_str(), std::string("[1, 3, 24, 40] f32"));
  EXPECT_TRUE(all_finite(img));
  Tensor m = vae.encode(random_tensor({2, 3, 24, 40}, 12)).contiguous();
  EXPECT_EQ(m.shape_str(), std::string("[2, 8, 3, 5] f32"));
  EXPECT_TRUE(all_finite(m));
  EXPECT_THROWS_CODE(vae.encode(random_tensor({1, 3, 20, 40}, 13)), ErrorCode::InvalidArgument);
}

TEST(models, convert_on_load_q8_0_close_to_f16) {
  WeightStore ref(sdntest::make_tiny_sd(), cpu_backend());
  WeightStore q(sdntest::make_tiny_sd(), cpu_backend());
  int64_t calls = 0;
  convert_weights(q, {"model.diffusion_model."}, DType::Q8_0, [&](int64_t, int64_t) { return ++calls > 0; });
  EXPECT_TRUE(calls > 100);
  EXPECT_TRUE(q.raw("model.diffusion_model.time_embed.0.weight").dtype == DType::Q8_0);
  // conv rows of 4*9 = 36 elements do not fit 32-element blocks: they stay 16-bit
  EXPECT_TRUE(q.raw("model.diffusion_model.input_blocks.0.0.weight").dtype == DType::F16);
  EXPECT_TRUE(q.raw("model.diffusion_model.out.0.weight").dtype == DType::F32);
  UNetModel ua(ref), ub(q);
  Tensor x = random_tensor({1, 4, 4, 4}, 14);
  Tensor ctx = random_tensor({1, 77, 64}, 15);
  Tensor ya = ua.forward(x, {400.f}, ctx).contiguous();
  Tensor yb = ub.forward(x, {400.f}, ctx).contiguous();
  // Relative RMS error. Q8_0 alone is ~0.5% per matrix product; the random (untrained) tiny U-Net amplifies it
  // to ~4% at the output, so 10% separates "converted correctly" from "garbage".
  double num = 0, den = 0;
  for (int64_t i = 0; i < ya.numel(); ++i) {
    num += (double)(ya.f32()[i] - yb.f32()[i]) * (ya.f32()[i] - yb.f32()[i]);
    den += (double)ya.f32()[i] * ya.f32()[i];
  }
  double rel = std::sqrt(num / den);
  if (rel > 0.1) SDN_FAIL("q8_0 U-Net differs from f16 by relative RMS " << rel);
  // K-quant fallback for rows that are not multiples of 256
  WeightStore k(sdntest::make_tiny_sd(), cpu_backend());
  convert_weights(k, {"model.diffusion_model."}, DType::Q4_K, {});
  EXPECT_TRUE(k.raw("model.diffusion_model.time_embed.0.weight").dtype == DType::Q5_0);   // rows of 32
  EXPECT_TRUE(k.raw("model.diffusion_model.time_embed.2.weight").dtype == DType::Q5_0);   // rows of 128
  EXPECT_TRUE(k.raw("model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.2.weight").dtype ==
              DType::Q4_K);  // rows of 4*64 = 256
  EXPECT_TRUE(k.raw("model.diffusion_model.input_blocks.0.0.weight").dtype == DType::F16);  // rows of 36
  UNetModel uk(k);
  Tensor yk = uk.forward(x, {400.f}, ctx).contiguous();
  for (int64_t i = 0; i < yk.numel(); ++i) EXPECT_TRUE(std::isfinite(yk.f32()[i]));
  // abort while converting
  WeightStore q2(sdntest::make_tiny_sd(), cpu_backend());
  EXPECT_THROWS_CODE(convert_weights(q2, {"model.diffusion_model."}, DType::Q4_0, [](int64_t d, int64_t) { return d < 3; }),
                     ErrorCode::Aborted);
}

TEST(models, missing_tensor_is_invalid_file) {
  auto t = sdntest::make_tiny_sd();
  t.erase("model.diffusion_model.middle_block.0.in_layers.2.weight");
  WeightStore w(std::move(t), cpu_backend());
  UNetModel unet(w);
  EXPECT_THROWS_CODE(unet.forward(random_tensor({1, 4, 4, 4}, 16), {1.f}, random_tensor({1, 77, 64}, 17)),
                     ErrorCode::InvalidFile);
}

// stable-diffusion.cpp's converter stores 1-D tensors (norm scales, OpenCLIP's fused q/k/v bias) as q8_0 when
// their length is a multiple of 32. Slicing such a vector must land on its blocks, and the store must hand the
// operations plain f32 values (a regression: an SDXL GGUF from its converter gave NaN in the U-Net).
TEST(models, quantized_vectors_slice_and_load_as_f32) {
  const int64_t n = 96;
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = std::sin(0.37f * (float)i + 0.1f) * 3.f;
  auto buf = std::shared_ptr<void>(std::malloc(dtype_row_bytes(DType::Q8_0, n)), std::free);
  quantize_row(DType::Q8_0, v.data(), buf.get(), n);
  Tensor q = Tensor::wrap(buf.get(), {n}, DType::Q8_0, buf);
  std::vector<float> ref(n);
  dequantize_row(DType::Q8_0, buf.get(), ref.data(), n);
  // slices on block boundaries read the right blocks
  Tensor mid = q.slice0(32, 64);
  std::vector<float> got(32);
  dequantize_row(DType::Q8_0, mid.data, got.data(), 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(got[i], ref[32 + i]);
  EXPECT_THROWS_CODE(q.slice0(16, 48), ErrorCode::InvalidFile);
  // the store dequantizes a quantized vector once
  std::map<std::string, Tensor> m;
  m["norm.weight"] = q;
  m["bias_part"] = mid;
  WeightStore w(std::move(m), cpu_backend());
  const Tensor& g = w.get("norm.weight");
  EXPECT_TRUE(g.dtype == DType::F32);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(g.f32()[i], ref[i]);
  const Tensor& b = w.get("bias_part");
  EXPECT_TRUE(b.dtype == DType::F32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(b.f32()[i], ref[32 + i]);
}
