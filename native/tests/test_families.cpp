// SD2.x / SDXL model features on in-memory tiny weights (tiny_sd.h, family "sd2" / "sdxl"): OpenCLIP fused q/k/v,
// pooled output and both text-projection layouts, penultimate layer without the final norm, linear proj_in/out,
// head size, label_emb / vector conditioning, and the per-family text conditioning (padding, layer, size
// embedding).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backends/backend.h"
#include "core/dtype.h"
#include "models/clip.h"
#include "models/conditioning.h"
#include "models/unet.h"
#include "models/weights.h"
#include "sdn/error.h"
#include "test.h"
#include "tiny_sd.h"

using namespace sdn;

namespace {

using TensorMap = std::map<std::string, Tensor>;

Tensor rnd(const std::vector<int64_t>& shape, uint32_t seed, float scale = 1.f) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  auto v = sdntest::random_vector((size_t)n, seed, -scale, scale);
  return Tensor::from_vector(shape, v);
}

std::vector<float> f32(const Tensor& t) {
  Tensor c = t.to_f32();
  return std::vector<float>(c.f32(), c.f32() + c.numel());
}

// A copy of rows [r0, r1) of a 2-D (or 1-D) tensor, in its own storage and type.
Tensor rows_copy(const Tensor& t, int64_t r0, int64_t r1) {
  Tensor v = t.slice0(r0, r1);
  size_t bytes = v.nbytes();
  auto buf = std::shared_ptr<void>(new char[bytes], [](void* p) { delete[] static_cast<char*>(p); });
  std::memcpy(buf.get(), v.data, bytes);
  return Tensor::wrap(buf.get(), v.sizes(), v.dtype, buf);
}

std::vector<int> ids_with_eos(int T, std::vector<int> toks, int eos, int pad) {
  std::vector<int> ids(T, pad);
  ids[0] = eos - 1;  // BOS
  for (size_t i = 0; i < toks.size(); ++i) ids[i + 1] = toks[i];
  ids[toks.size() + 1] = eos;
  return ids;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 1e30;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return m;
}

const char* kTe = "cond_stage_model.transformer.text_model.";
const char* kTe2 = "cond_stage_model.1.transformer.text_model.";

}  // namespace

TEST(families, openclip_fused_qkv_equals_separate) {
  sdntest::TinySdConfig c;
  c.family = "sd2";
  TensorMap fused = sdntest::make_tiny_sd(c);
  TensorMap sep = fused;
  for (int l = 0; l < c.clip_layers; ++l) {
    std::string p = std::string(kTe) + "encoder.layers." + std::to_string(l) + ".self_attn.";
    const Tensor w = sep.at(p + "in_proj.weight"), b = sep.at(p + "in_proj.bias");
    const char* n[3] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; i < 3; ++i) {
      sep[p + n[i] + ".weight"] = rows_copy(w, i * c.ctx, (i + 1) * c.ctx);
      sep[p + n[i] + ".bias"] = rows_copy(b, i * c.ctx, (i + 1) * c.ctx);
    }
    sep.erase(p + "in_proj.weight");
    sep.erase(p + "in_proj.bias");
  }
  WeightStore wf(fused, cpu_backend()), ws(sep, cpu_backend());
  ClipTextModel a(wf, kTe, 0, ClipActivation::GeluErf), b(ws, kTe, 0, ClipActivation::GeluErf);
  EXPECT_EQ(a.layers(), c.clip_layers);
  auto ids = ids_with_eos(77, {300, 301, 302}, 513, 0);
  for (int skip : {1, 2}) {
    auto ya = f32(a.encode(ids, 1, skip)), yb = f32(b.encode(ids, 1, skip));
    EXPECT_TRUE(max_diff(ya, yb) == 0.0);
  }
  // a fused weight of the wrong shape is a typed error naming the tensor
  TensorMap bad = fused;
  bad[std::string(kTe) + "encoder.layers.0.self_attn.in_proj.weight"] = rnd({2 * c.ctx, c.ctx}, 3);
  WeightStore wb(bad, cpu_backend());
  EXPECT_THROWS_CODE(ClipTextModel(wb, kTe, 0, ClipActivation::GeluErf), ErrorCode::InvalidFile);
}

TEST(families, clip_penultimate_and_pooled_output) {
  sdntest::TinySdConfig c;
  c.family = "sdxl";
  c.clip_layers = 3;
  TensorMap m = sdntest::make_tiny_sd(c);
  WeightStore w(m, cpu_backend());
  ClipTextModel enc(w, kTe2, 0, ClipActivation::GeluErf);
  EXPECT_TRUE(enc.has_projection());
  EXPECT_EQ(enc.projection_width(), c.proj);
  auto ids = ids_with_eos(77, {300, 301, 302, 303}, 513, 0);  // EOS at position 5

  // penultimate, no final norm: the same as a model whose last layer is removed, run to its end without the norm
  ClipEncodeOptions pen;
  pen.clip_skip = 2;
  pen.final_norm = false;
  pen.pooled = true;
  ClipEncoding e = enc.encode(ids, 1, pen);
  TensorMap shorter;
  for (auto& kv : m)
    if (kv.first.find(std::string(kTe2) + "encoder.layers." + std::to_string(c.clip_layers - 1) + ".") != 0)
      shorter[kv.first] = kv.second;
  WeightStore ws(shorter, cpu_backend());
  ClipTextModel enc_short(ws, kTe2, 0, ClipActivation::GeluErf);
  EXPECT_EQ(enc_short.layers(), c.clip_layers - 1);
  ClipEncodeOptions last;
  last.clip_skip = 1;
  last.final_norm = false;
  EXPECT_TRUE(max_diff(f32(e.hidden), f32(enc_short.encode(ids, 1, last).hidden)) == 0.0);

  // pooled = LN_final(all layers)[first EOS] @ P, P = text_projection [width, proj] (OpenCLIP layout)
  Tensor full = enc.encode(ids, 1, 1);  // all layers + final norm
  std::vector<float> h = f32(full), P = f32(m.at(std::string(kTe2) + "text_projection"));
  std::vector<double> want(c.proj, 0.0);
  const int eos_pos = 5;
  for (int j = 0; j < c.proj; ++j)
    for (int i = 0; i < c.ctx2; ++i) want[j] += (double)h[(size_t)eos_pos * c.ctx2 + i] * P[(size_t)i * c.proj + j];
  EXPECT_EQ(e.pooled.shape_str(), std::string("[1, 32] f32"));
  EXPECT_CLOSE(e.pooled.f32(), want.data(), (size_t)c.proj, 1e-4, 1e-4);

  // diffusers / HF layout: text_projection.weight = P^T [proj, width], applied as a Linear: same pooled vector
  TensorMap hf = m;
  hf.erase(std::string(kTe2) + "text_projection");
  std::vector<float> pt((size_t)c.proj * c.ctx2);
  for (int i = 0; i < c.ctx2; ++i)
    for (int j = 0; j < c.proj; ++j) pt[(size_t)j * c.ctx2 + i] = P[(size_t)i * c.proj + j];
  hf[std::string(kTe2) + "text_projection.weight"] = Tensor::from_vector({c.proj, c.ctx2}, pt);
  WeightStore wh(hf, cpu_backend());
  ClipTextModel enc_hf(wh, kTe2, 0, ClipActivation::GeluErf);
  ClipEncoding eh = enc_hf.encode(ids, 1, pen);
  EXPECT_TRUE(max_diff(f32(eh.pooled), f32(e.pooled)) < 1e-5);

  // SDN_POOLED_PROJECTION=linear: the stored OpenCLIP matrix applied as a Linear weight (row @ P^T), the reference
  // engine's rule for these files (real towers have square projections; a square tiny one here)
  {
    sdntest::TinySdConfig cs = c;
    cs.proj = cs.ctx2;
    TensorMap ms = sdntest::make_tiny_sd(cs);
    ::setenv("SDN_POOLED_PROJECTION", "linear", 1);
    WeightStore wl(ms, cpu_backend());
    ClipTextModel enc_l(wl, kTe2, 0, ClipActivation::GeluErf);
    ::unsetenv("SDN_POOLED_PROJECTION");
    ClipEncoding el = enc_l.encode(ids, 1, pen);
    std::vector<float> hs = f32(enc_l.encode(ids, 1, 1)), Ps = f32(ms.at(std::string(kTe2) + "text_projection"));
    std::vector<double> want_t(cs.proj, 0.0);
    for (int j = 0; j < cs.proj; ++j)
      for (int i = 0; i < cs.ctx2; ++i) want_t[j] += (double)hs[(size_t)eos_pos * cs.ctx2 + i] * Ps[(size_t)j * cs.ctx2 + i];
    EXPECT_CLOSE(el.pooled.f32(), want_t.data(), (size_t)cs.proj, 1e-4, 1e-4);
  }

  // the first encoder (CLIP-L layout) has no projection: asking for a pooled output is a typed error
  ClipTextModel enc1(w, kTe, 0, ClipActivation::QuickGelu);
  EXPECT_TRUE(!enc1.has_projection());
  EXPECT_THROWS_CODE(enc1.encode(ids, 1, pen), ErrorCode::InvalidFile);
}

TEST(families, unet_linear_projections_and_head_size) {
  sdntest::TinySdConfig c;
  c.family = "sd2";
  TensorMap lin = sdntest::make_tiny_sd(c);
  TensorMap conv = lin;
  int n = 0;
  for (auto& kv : conv)
    if (kv.second.ndim == 2 && (kv.first.find(".proj_in.weight") != std::string::npos ||
                                kv.first.find(".proj_out.weight") != std::string::npos)) {
      kv.second = kv.second.reshape({kv.second.shape[0], kv.second.shape[1], 1, 1});
      ++n;
    }
  EXPECT_TRUE(n >= 4);
  WeightStore wl(lin, cpu_backend()), wc(conv, cpu_backend());
  // heads of 16 channels: 2 heads at 32 channels, 4 at 64 (also given as fixed counts where they agree)
  UNetModel ul(wl, "model.diffusion_model.", 0, false, 16), uc(wc, "model.diffusion_model.", 0, false, 16);
  EXPECT_EQ(ul.adm_channels(), 0);
  Tensor x = rnd({1, 4, 4, 6}, 1), ctx = rnd({1, 77, c.ctx}, 2);
  auto a = f32(ul.forward(x, {321.5f}, ctx)), b = f32(uc.forward(x, {321.5f}, ctx));
  EXPECT_TRUE(max_diff(a, b) < 1e-5);
  // a different head size changes the result (the attention really splits by head size)
  UNetModel u8(wl, "model.diffusion_model.", 0, false, 8);
  EXPECT_TRUE(max_diff(a, f32(u8.forward(x, {321.5f}, ctx))) > 1e-4);
  UNetModel bad(wl, "model.diffusion_model.", 0, false, 24);  // 32 channels do not split into heads of 24
  EXPECT_THROWS_CODE(bad.forward(x, {321.5f}, ctx), ErrorCode::InvalidFile);
  // a y for a model without label_emb is refused
  Tensor y = rnd({1, 8}, 3);
  EXPECT_THROWS_CODE(ul.forward(x, {321.5f}, ctx, nullptr, nullptr, &y), ErrorCode::InvalidArgument);
}

TEST(families, unet_label_emb_vector_conditioning) {
  sdntest::TinySdConfig c;
  c.family = "sdxl";
  TensorMap m = sdntest::make_tiny_sd(c);
  WeightStore w(m, cpu_backend());
  UNetModel u(w, "model.diffusion_model.", 0, false, 16);
  const int adm = c.proj + 6 * 256;
  EXPECT_EQ(u.adm_channels(), adm);
  EXPECT_EQ(u.context_dim(), c.ctx + c.ctx2);
  EXPECT_EQ(u.size_multiple(), 2);
  Tensor x = rnd({2, 4, 4, 4}, 1), ctx = rnd({2, 77, c.ctx + c.ctx2}, 2);
  Tensor y = rnd({2, adm}, 3), y2 = rnd({2, adm}, 4);
  auto a = f32(u.forward(x, {500.f, 500.f}, ctx, nullptr, nullptr, &y));
  EXPECT_TRUE(max_diff(a, f32(u.forward(x, {500.f, 500.f}, ctx, nullptr, nullptr, &y2))) > 1e-4);  // y matters
  EXPECT_THROWS_CODE(u.forward(x, {500.f, 500.f}, ctx), ErrorCode::InvalidArgument);     // y required
  Tensor ybad = rnd({2, adm - 1}, 5);
  EXPECT_THROWS_CODE(u.forward(x, {500.f, 500.f}, ctx, nullptr, nullptr, &ybad), ErrorCode::InvalidArgument);
  // label_emb's output added to the time embedding: with a zero last layer the model equals one without it
  TensorMap zero = m, none;
  const std::string P = "model.diffusion_model.label_emb.0.2.";
  zero[P + "weight"] = Tensor::from_vector(m.at(P + "weight").sizes(), std::vector<float>((size_t)m.at(P + "weight").numel(), 0.f));
  zero[P + "bias"] = Tensor::from_vector(m.at(P + "bias").sizes(), std::vector<float>((size_t)m.at(P + "bias").numel(), 0.f));
  for (auto& kv : m)
    if (kv.first.find("model.diffusion_model.label_emb.") != 0) none[kv.first] = kv.second;
  WeightStore wz(zero, cpu_backend()), wn(none, cpu_backend());
  UNetModel uz(wz, "model.diffusion_model.", 0, false, 16), un(wn, "model.diffusion_model.", 0, false, 16);
  EXPECT_TRUE(max_diff(f32(uz.forward(x, {500.f, 500.f}, ctx, nullptr, nullptr, &y)), f32(un.forward(x, {500.f, 500.f}, ctx))) <
              1e-6);
  // level 0 has no attention (SDXL layout): the model still runs at odd latent multiples of 2
  Tensor x3 = rnd({1, 4, 2, 6}, 6), c3 = rnd({1, 77, c.ctx + c.ctx2}, 7), y3 = rnd({1, adm}, 8);
  EXPECT_EQ(u.forward(x3, {10.f}, c3, nullptr, nullptr, &y3).shape_str(), std::string("[1, 4, 2, 6] f32"));
}

TEST(families, sd2_conditioning_zero_padding_penultimate) {
  sdntest::TinySdConfig c;
  c.family = "sd2";
  TensorMap m = sdntest::make_tiny_sd(c);
  WeightStore w(m, cpu_backend());
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  TextConditioner cond(w, tok, ModelFamily::SD2);
  EXPECT_EQ(cond.default_clip_skip(), 2);
  EXPECT_EQ(cond.adm_channels(), 0);
  TextConditioning tc = cond.encode("the and", 0, {});
  EXPECT_TRUE(!tc.y.defined());
  EXPECT_EQ(tc.context.shape_str(), std::string("[1, 77, 64] f32"));
  // reference: the ids with 0 after the first EOS, penultimate layer + final LayerNorm
  TokenizedPrompt tp = tokenize_prompt(*tok, "the and");
  std::vector<int> ids = tp.ids;
  bool seen = false;
  for (int& v : ids) {
    if (seen) v = 0;
    else if (v == tok->eos()) seen = true;
  }
  ClipTextModel enc(w, kTe, 0, ClipActivation::GeluErf);
  EXPECT_TRUE(max_diff(f32(tc.context), f32(enc.encode(ids, 1, 2))) == 0.0);
  // EOS padding would give a different context (the padding matters)
  EXPECT_TRUE(max_diff(f32(tc.context), f32(enc.encode(tp.ids, 1, 2))) > 1e-4);
  EXPECT_THROWS_CODE(cond.encode("x", 9, {}), ErrorCode::InvalidArgument);
}

TEST(families, sdxl_conditioning_context_pooled_and_size_embedding) {
  sdntest::TinySdConfig c;
  c.family = "sdxl";
  TensorMap m = sdntest::make_tiny_sd(c);
  WeightStore w(m, cpu_backend());
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  TextConditioner cond(w, tok, ModelFamily::SDXL);
  EXPECT_EQ(cond.context_dim(), c.ctx + c.ctx2);
  EXPECT_EQ(cond.adm_channels(), c.proj + 6 * 256);
  SizeConditioning sz;
  sz.target_width = 96;
  sz.target_height = 64;
  sz.crop_top = 8;
  TextConditioning tc = cond.encode("the and", 0, sz);
  EXPECT_EQ(tc.context.shape_str(), std::string("[1, 77, 128] f32"));
  EXPECT_EQ(tc.y.shape_str(), std::string("[1, 1568] f32"));
  // reference: CLIP-L (EOS padding) and bigG (0 padding), both penultimate without the final norm
  TokenizedPrompt tp = tokenize_prompt(*tok, "the and");
  std::vector<int> ids2 = tp.ids;
  bool seen = false;
  for (int& v : ids2) {
    if (seen) v = 0;
    else if (v == tok->eos()) seen = true;
  }
  ClipTextModel e1(w, kTe, 0, ClipActivation::QuickGelu), e2(w, kTe2, 0, ClipActivation::GeluErf);
  ClipEncodeOptions o;
  o.clip_skip = 2;
  o.final_norm = false;
  auto h1 = f32(e1.encode(tp.ids, 1, o).hidden);
  o.pooled = true;
  ClipEncoding g = e2.encode(ids2, 1, o);
  auto h2 = f32(g.hidden);
  std::vector<float> ctx = f32(tc.context);
  double d = 0;
  for (int t = 0; t < 77; ++t) {
    for (int i = 0; i < c.ctx; ++i) d = std::max(d, (double)std::fabs(ctx[(size_t)t * 128 + i] - h1[(size_t)t * c.ctx + i]));
    for (int i = 0; i < c.ctx2; ++i)
      d = std::max(d, (double)std::fabs(ctx[(size_t)t * 128 + c.ctx + i] - h2[(size_t)t * c.ctx2 + i]));
  }
  EXPECT_TRUE(d == 0.0);
  // y = [pooled | E(orig h = 64) E(orig w = 96) E(crop top = 8) E(crop left = 0) E(target h) E(target w)]
  std::vector<float> y = f32(tc.y), pooled = f32(g.pooled);
  EXPECT_TRUE(max_diff(std::vector<float>(y.begin(), y.begin() + c.proj), pooled) == 0.0);
  const double vals[6] = {64, 96, 8, 0, 64, 96};
  std::vector<double> want;
  for (double v : vals)
    for (int half = 0; half < 2; ++half)
      for (int j = 0; j < 128; ++j) {
        double f = std::exp(-std::log(10000.0) * j / 128.0);
        want.push_back(half == 0 ? std::cos(v * f) : std::sin(v * f));
      }
  EXPECT_CLOSE(y.data() + c.proj, want.data(), want.size(), 2e-5, 0);
  // zero context for an empty negative prompt keeps y (the reference engine's rule)
  TextConditioning z = cond.encode("", 0, sz, true);
  EXPECT_TRUE(max_diff(f32(z.context), std::vector<float>((size_t)77 * 128, 0.f)) == 0.0);
  EXPECT_TRUE(max_diff(f32(z.y), f32(cond.encode("", 0, sz).y)) == 0.0);
  // a missing second encoder is a typed error naming what is missing
  TensorMap no2;
  for (auto& kv : m)
    if (kv.first.find("cond_stage_model.1.") != 0) no2[kv.first] = kv.second;
  WeightStore w2(no2, cpu_backend());
  EXPECT_THROWS_CODE(TextConditioner(w2, tok, ModelFamily::SDXL), ErrorCode::InvalidFile);
}
