// Adapters: LoRA file reading and name matching, the WeightStore weight-adapter point (merge, switching, error of
// storing merged weights in f16/bf16/quantized types), U-Net control residuals, the ControlNet model, LoRA prompt
// tags and textual-inversion embeddings. On in-memory tiny weights (tiny_sd.h) and small files written here. The
// SDXL (and SD 1.x) diffusers-layout ControlNets are checked at the residual level against an independent numpy
// reference (test/helpers/controlnet_reference.py) on tiny files from scripts/make-tiny-controlnet.js.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "backends/backend.h"
#include "core/quant.h"
#include "models/clip.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "models/unet.h"
#include "models/weights.h"
#include "formats/weight_file.h"
#include "pipeline/adapters.h"
#include "sdn/error.h"
#include "st_writer.h"
#include "test.h"
#include "text/tokenizer.h"
#include "tiny_sd.h"

using namespace sdn;

namespace {

std::string tmp_dir() {
  std::string d = "/tmp/sdn-adapters-test-" + std::to_string((long)getpid());
  mkdir(d.c_str(), 0755);
  return d;
}

// A safetensors file of F32 tensors (name -> shape, values from a seed; 0-dim tensors get `scalar`).
void write_st(const std::string& path, const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts,
              uint32_t seed, float scalar = 4.f, float scale = 0.5f) {
  std::vector<sdntest::StTensor> out;
  for (size_t i = 0; i < ts.size(); ++i) {
    int64_t n = 1;
    for (auto d : ts[i].second) n *= d;
    std::vector<float> v = ts[i].second.empty() ? std::vector<float>{scalar}
                                                : sdntest::random_vector((size_t)n, seed + (uint32_t)i, -scale, scale);
    out.push_back({ts[i].first, ts[i].second, std::move(v)});
  }
  sdntest::write_f32_safetensors(path, out);
}

std::vector<double> f64(const Tensor& t) {
  Tensor f = t.to_f32();
  return std::vector<double>(f.f32(), f.f32() + f.numel());
}

// W + scale * up @ down in double (reference)
std::vector<double> merged_ref(const Tensor& w, const Tensor& up, const Tensor& down, double scale, int64_t off = 0) {
  std::vector<double> W = f64(w), U = f64(up), D = f64(down);
  const int64_t rows = w.shape[0], K = w.numel() / rows, R = up.shape[0], r = up.numel() / R;
  for (int64_t o = 0; o < R; ++o)
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t j = 0; j < r; ++j) s += U[o * r + j] * D[j * K + k];
      W[(o + off) * K + k] += scale * s;
    }
  (void)rows;
  return W;
}

double rel_rms(const std::vector<double>& a, const std::vector<double>& ref) {
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (a[i] - ref[i]) * (a[i] - ref[i]);
    n += ref[i] * ref[i];
  }
  return std::sqrt(e / (n > 0 ? n : 1));
}

const std::string U = "model.diffusion_model.";
const std::string T = "cond_stage_model.transformer.text_model.";

// kohya LoRA for the tiny model: two attention projections, a 1x1 proj_in, a 3x3 LoCon on a resnet conv, one text
// encoder projection, one name that exists nowhere, and a LoHa tensor.
std::string tiny_kohya_lora(const std::string& dir, int rank = 4) {
  std::string p = dir + "/tiny-kohya.safetensors";
  std::vector<std::pair<std::string, std::vector<int64_t>>> ts;
  auto pair = [&](const std::string& n, std::vector<int64_t> down, std::vector<int64_t> up, bool alpha = true) {
    ts.push_back({n + ".lora_down.weight", down});
    ts.push_back({n + ".lora_up.weight", up});
    if (alpha) ts.push_back({n + ".alpha", {}});
  };
  const int64_t r = rank;
  pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", {r, 32}, {32, r});
  pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", {r, 64}, {32, r});
  pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0", {r, 32}, {32, r});
  pair("lora_unet_down_blocks_0_attentions_0_proj_in", {r, 32, 1, 1}, {32, r, 1, 1});
  pair("lora_unet_down_blocks_0_resnets_0_conv1", {r, 32, 3, 3}, {32, r, 1, 1});
  pair("lora_te_text_model_encoder_layers_0_self_attn_q_proj", {r, 64}, {64, r}, false);
  pair("lora_unet_down_blocks_7_attentions_0_proj_in", {r, 32, 1, 1}, {32, r, 1, 1});
  ts.push_back({"lora_unet_mid_block_resnets_0_conv1.hada_w1_a", {4, 4}});
  write_st(p, ts, 100);
  return p;
}

std::string repo_root() {
  std::string f = __FILE__;  // <root>/native/tests/test_adapters.cpp
  size_t p = f.rfind("/native/tests/");
  return p == std::string::npos ? std::string(".") : f.substr(0, p);
}

// A safetensors file of the given tensors (stored as F32).
void write_st_values(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& ts) {
  std::vector<sdntest::StTensor> out;
  for (const auto& kv : ts) {
    Tensor t = kv.second.to_f32().contiguous();
    out.push_back({kv.first, t.sizes(), std::vector<float>(t.f32(), t.f32() + t.numel())});
  }
  sdntest::write_f32_safetensors(path, out);
}

// Runs a shell command; returns its exit status, and what it printed through out.
int run_cmd(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int rc = pclose(p);
  if (out) *out = text;
  return rc;
}

}  // namespace

TEST(adapters, kohya_module_names) {
  EXPECT_EQ(kohya_dotted("down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_out_0"),
            std::string("down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0"));
  EXPECT_EQ(kohya_dotted("mid_block_attentions_0_proj_out"), std::string("mid_block.attentions.0.proj_out"));
  EXPECT_EQ(kohya_dotted("up_blocks_1_resnets_2_conv_shortcut"), std::string("up_blocks.1.resnets.2.conv_shortcut"));
  EXPECT_EQ(kohya_dotted("text_model_encoder_layers_11_self_attn_out_proj"),
            std::string("text_model.encoder.layers.11.self_attn.out_proj"));
  EXPECT_EQ(kohya_dotted("text_model_encoder_layers_3_mlp_fc1"), std::string("text_model.encoder.layers.3.mlp.fc1"));
  EXPECT_EQ(kohya_dotted("input_blocks_4_1_transformer_blocks_0_ff_net_0_proj"),
            std::string("input_blocks.4.1.transformer_blocks.0.ff.net.0.proj"));
  EXPECT_EQ(kohya_dotted("output_blocks_2_0_emb_layers_1"), std::string("output_blocks.2.0.emb_layers.1"));
}

TEST(adapters, lora_matching_and_merge_f32) {
  std::map<std::string, Tensor> mem = sdntest::make_tiny_sd();
  for (auto& kv : mem) kv.second = kv.second.to_f32();  // f32 weights: the merge must equal the f64 reference
  WeightStore w(mem, cpu_backend());
  auto lf = LoraFile::open(tiny_kohya_lora(tmp_dir()));
  LoraMatch m = lf->match(w, 0.8f, "sd1");
  EXPECT_EQ(m.pairs, 7);
  EXPECT_EQ(m.matched, 6);
  EXPECT_EQ(m.unmatched.size(), (size_t)1);
  EXPECT_EQ(m.unsupported.size(), (size_t)1);
  EXPECT_TRUE(m.unsupported[0].find("LoHa") != std::string::npos);
  const std::string q = U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
  const std::string out0 = U + "input_blocks.1.1.transformer_blocks.0.attn2.to_out.0.weight";
  const std::string conv = U + "input_blocks.1.0.in_layers.2.weight";
  const std::string te = T + "encoder.layers.0.self_attn.q_proj.weight";
  for (const auto& n : {q, out0, conv, te, U + "input_blocks.1.1.proj_in.weight"})
    if (!m.deltas.count(n)) SDN_FAIL("no delta for " << n);
  // scale = weight * alpha / rank = 0.8 * 4 / 4; no alpha -> weight
  EXPECT_NEAR(m.deltas[q][0].scale, 0.8f, 1e-6);
  EXPECT_NEAR(m.deltas[te][0].scale, 0.8f, 1e-6);
  const Tensor before = w.raw(conv).to_f32();
  DeltaUpdate u = w.set_deltas(merge_matches({m}));
  EXPECT_EQ(u.weights_changed, 6);
  for (const auto& n : {q, conv, te}) {
    const WeightDelta& d = m.deltas[n][0];
    std::vector<double> ref = merged_ref(w.raw(n), d.up, d.down, d.scale);
    double e = rel_rms(f64(w.adapted(n)), ref);
    if (e > 1e-6) SDN_FAIL(n << ": merged differs from the f64 reference by " << e);
  }
  // the prepared weight the models use is the merged one; the stored one is untouched
  EXPECT_TRUE(w.get(conv).storage_id() == w.adapted(conv).storage_id());
  EXPECT_TRUE(rel_rms(f64(w.raw(conv)), f64(before)) == 0);
  EXPECT_TRUE(w.merged_bytes() > 0);
  // removing the LoRA gives the original weights back
  w.set_deltas({});
  EXPECT_TRUE(w.get(conv).storage_id() == w.raw(conv).storage_id());
  EXPECT_EQ(w.merged_bytes(), (uint64_t)0);
}

TEST(adapters, lora_switch_reprepares_only_changed_weights) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  auto lf = LoraFile::open(tiny_kohya_lora(tmp_dir()));
  const std::string q = U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight";
  const std::string other = U + "input_blocks.1.1.transformer_blocks.0.attn1.to_k.weight";
  w.set_deltas(merge_matches({lf->match(w, 1.0f, "sd1")}));
  const std::vector<double> q1 = f64(w.get(q));
  const void* o1 = w.get(other).storage_id();
  const void* te1 = w.get(T + "encoder.layers.0.self_attn.q_proj.weight").storage_id();
  // same file, another weight: every adapted weight changes, the others stay as prepared
  DeltaUpdate u = w.set_deltas(merge_matches({lf->match(w, 0.5f, "sd1")}));
  EXPECT_EQ(u.weights_changed, 6);
  EXPECT_TRUE(w.get(other).storage_id() == o1);
  EXPECT_TRUE(rel_rms(f64(w.get(q)), q1) > 1e-3);  // merged again with the new weight
  // only the U-Net part of the set changes: the text-encoder weight keeps its merged copy
  auto m = lf->match(w, 0.5f, "sd1");
  const void* te2 = w.get(T + "encoder.layers.0.self_attn.q_proj.weight").storage_id();
  m.deltas.erase(q);
  u = w.set_deltas(merge_matches({m}));
  EXPECT_EQ(u.weights_changed, 1);
  EXPECT_TRUE(w.get(T + "encoder.layers.0.self_attn.q_proj.weight").storage_id() == te2);
  (void)te1;
  // two LoRAs at once: deltas add up
  auto m1 = lf->match(w, 0.5f, "sd1"), m2 = lf->match(w, 0.25f, "sd1");
  w.set_deltas(merge_matches({m1, m2}));
  EXPECT_EQ(w.deltas().at(q).size(), (size_t)2);
}

TEST(adapters, lora_on_f16_bf16_and_quantized_weights_error_vs_f32) {
  // Merged weights are stored in the weight's own type. Error against merging in f32 (kept in f32), relative RMS,
  // next to the error of the type itself on the unmerged weight.
  const int64_t N = 320, K = 768, r = 8;
  Tensor w32 = Tensor::from_vector({N, K}, sdntest::random_vector((size_t)(N * K), 7, -0.06f, 0.06f));
  Tensor up = Tensor::from_vector({N, r}, sdntest::random_vector((size_t)(N * r), 8, -0.3f, 0.3f));
  Tensor down = Tensor::from_vector({r, K}, sdntest::random_vector((size_t)(r * K), 9, -0.3f, 0.3f));
  WeightDelta d;
  d.up = up;
  d.down = down;
  d.scale = 0.4f;
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    // the base in type t (as loaded), merged in f32 and stored in t, vs the same base merged and kept in f32
    Tensor base = merge_deltas("w", w32, {}, t);
    std::vector<double> ref = f64(merge_deltas("w", base, {d}, DType::F32));
    double err = rel_rms(f64(merge_deltas("w", base, {d})), ref);
    double type_err = rel_rms(f64(base), f64(w32));
    std::printf("  lora merge stored as %-5s: rel. RMS error vs f32 merge %.2e (the type's own error on the weight %.2e)\n",
                dtype_name(t), err, type_err);
    if (!(err <= 2.0 * type_err + 1e-7)) SDN_FAIL(dtype_name(t) << ": merge error " << err << " vs type error " << type_err);
  }
}

TEST(adapters, lora_for_another_family_is_rejected_and_store_unchanged) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  std::string dir = tmp_dir();
  std::string p = dir + "/sdxl-style.safetensors";
  write_st(p, {{"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", {4, 64}},
               {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", {64, 4}},
               {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight", {4, 2048}},
               {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight", {640, 4}}},
           1);
  auto lf = LoraFile::open(p);
  try {
    lf->match(w, 1.f, "sd1");
    SDN_FAIL("expected an error");
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == ErrorCode::InvalidArgument);
    std::string m = e.what();
    if (m.find("sdxl-style.safetensors") == std::string::npos || m.find("SDXL") == std::string::npos)
      SDN_FAIL("message does not name the file and family: " << m);
  }
  // a pair whose shape does not fit its weight: error naming the file
  std::string p2 = dir + "/bad-shape.safetensors";
  write_st(p2, {{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", {4, 48}},
                {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight", {32, 4}}},
           2);
  EXPECT_THROWS_CODE(LoraFile::open(p2)->match(w, 1.f, "sd1"), ErrorCode::InvalidArgument);
  // not a LoRA at all
  std::string p3 = dir + "/not-lora.safetensors";
  write_st(p3, {{"foo.weight", {4, 4}}}, 3);
  EXPECT_THROWS_CODE(LoraFile::open(p3), ErrorCode::InvalidArgument);
  EXPECT_TRUE(w.deltas().empty());
}

TEST(adapters, lora_peft_and_diffusers_names) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  std::string p = tmp_dir() + "/peft.safetensors";
  write_st(p, {{"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.lora_A.weight", {4, 32}},
               {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.lora_B.weight", {32, 4}},
               {"unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora.down.weight", {4, 256}},
               {"unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora.up.weight", {64, 4}},
               {"text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_A.weight", {4, 64}},
               {"text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_B.weight", {256, 4}}},
           4);
  auto m = LoraFile::open(p)->match(w, 1.f, "sd1");
  EXPECT_EQ(m.matched, 3);
  EXPECT_TRUE(m.deltas.count(U + "input_blocks.1.1.transformer_blocks.0.attn1.to_v.weight") == 1);
  EXPECT_TRUE(m.deltas.count(U + "middle_block.1.transformer_blocks.0.ff.net.2.weight") == 1);
  EXPECT_TRUE(m.deltas.count(T + "encoder.layers.1.mlp.fc1.weight") == 1);
  EXPECT_NEAR(m.deltas.begin()->second[0].scale, 1.0f, 1e-6);  // no alpha: scale = weight
}

TEST(adapters, unet_residuals_input) {
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  UNetModel unet(w);
  Tensor x = Tensor::from_vector({1, 4, 8, 8}, sdntest::random_vector(256, 11));
  Tensor ctx = Tensor::from_vector({1, 77, 64}, sdntest::random_vector(77 * 64, 12));
  Tensor ref = unet.forward(x, {400.f}, ctx).contiguous();
  std::vector<Tensor> states = unet.encoder_states(x, {400.f}, ctx);
  EXPECT_EQ((int)states.size(), unet.input_blocks() + 1);
  std::vector<Tensor> zeros, ones;
  for (int i = 0; i <= unet.input_blocks(); ++i) {
    EXPECT_EQ(states[i].shape[1], unet.block_channels(i));
    zeros.push_back(Tensor::zeros(states[i].sizes()));
    Tensor o = Tensor::zeros(states[i].sizes());
    for (int64_t k = 0; k < o.numel(); ++k) o.f32()[k] = 0.1f;
    ones.push_back(o);
  }
  Tensor a = unet.forward(x, {400.f}, ctx, nullptr, &zeros).contiguous();
  double d = 0;
  for (int64_t k = 0; k < a.numel(); ++k) d = std::max(d, (double)std::fabs(a.f32()[k] - ref.f32()[k]));
  if (d > 1e-6) SDN_FAIL("zero residuals changed the output by " << d);
  Tensor b = unet.forward(x, {400.f}, ctx, nullptr, &ones).contiguous();
  d = 0;
  for (int64_t k = 0; k < b.numel(); ++k) d = std::max(d, (double)std::fabs(b.f32()[k] - ref.f32()[k]));
  EXPECT_TRUE(d > 1e-4);
  std::vector<Tensor> short_list(zeros.begin(), zeros.end() - 1);
  EXPECT_THROWS_CODE(unet.forward(x, {400.f}, ctx, nullptr, &short_list), ErrorCode::InvalidArgument);
}

TEST(adapters, controlnet_tiny_lllyasviel) {
  // a tiny ControlNet: the tiny U-Net's encoder under control_model., a hint encoder down to 1/8 and zero convs
  std::map<std::string, Tensor> base = sdntest::make_tiny_sd();
  std::map<std::string, Tensor> cn;
  for (auto& kv : base) {
    const std::string& n = kv.first;
    if (n.compare(0, U.size(), U) != 0) continue;
    std::string r = n.substr(U.size());
    if (r.compare(0, 14, "output_blocks.") == 0 || r.compare(0, 4, "out.") == 0) continue;
    cn["control_model." + r] = kv.second;
  }
  const int64_t hint[8][2] = {{16, 3}, {16, 16}, {32, 16}, {32, 32}, {96, 32}, {96, 96}, {256, 96}, {32, 256}};
  for (int k = 0; k < 8; ++k) {
    std::string p = "control_model.input_hint_block." + std::to_string(2 * k);
    int64_t n = hint[k][0] * hint[k][1] * 9;
    cn[p + ".weight"] = Tensor::from_vector({hint[k][0], hint[k][1], 3, 3},
                                            sdntest::random_vector((size_t)n, 20 + k, -0.2f, 0.2f));
    cn[p + ".bias"] = Tensor::zeros({hint[k][0]});
  }
  WeightStore tmp(base, cpu_backend());
  UNetModel unet(tmp);
  for (int i = 0; i <= unet.input_blocks(); ++i) {
    int64_t c = unet.block_channels(i);
    std::string p = i < unet.input_blocks() ? "control_model.zero_convs." + std::to_string(i) + ".0"
                                            : std::string("control_model.middle_block_out.0");
    cn[p + ".weight"] = Tensor::from_vector({c, c, 1, 1}, sdntest::random_vector((size_t)(c * c), 40 + i, -0.1f, 0.1f));
    cn[p + ".bias"] = Tensor::zeros({c});
  }
  WeightStore w(cn, cpu_backend());
  ControlNetModel ctl(w, "tiny-controlnet");
  EXPECT_EQ(ctl.layout(), std::string("lllyasviel"));
  EXPECT_EQ(ctl.outputs(), unet.input_blocks() + 1);
  Tensor img = Tensor::from_vector({1, 3, 64, 64}, sdntest::random_vector(3 * 64 * 64, 13, 0.f, 1.f));
  Tensor h = ctl.hint(img);
  EXPECT_EQ(h.shape_str(), std::string("[1, 32, 8, 8] f32"));
  Tensor x = Tensor::from_vector({2, 4, 8, 8}, sdntest::random_vector(512, 14));
  Tensor ctx = Tensor::from_vector({2, 77, 64}, sdntest::random_vector(2 * 77 * 64, 15));
  std::vector<Tensor> res = ctl.forward(x, {500.f, 500.f}, ctx, h, 0.5f);
  EXPECT_EQ((int)res.size(), ctl.outputs());
  for (int i = 0; i < (int)res.size(); ++i) EXPECT_EQ(res[i].shape[1], unet.block_channels(i));
  // strength scales the residuals linearly
  std::vector<Tensor> res1 = ctl.forward(x, {500.f, 500.f}, ctx, h, 1.0f);
  Tensor a = res[3].contiguous(), b = res1[3].contiguous();
  for (int64_t k = 0; k < a.numel(); k += 17) EXPECT_NEAR(a.f32()[k] * 2.f, b.f32()[k], 1e-5);
  Tensor y = unet.forward(x, {500.f, 500.f}, ctx, nullptr, &res);
  EXPECT_EQ(y.shape_str(), std::string("[2, 4, 8, 8] f32"));
  // not a ControlNet
  WeightStore bad(base, cpu_backend());
  EXPECT_THROWS_CODE(ControlNetModel(bad, "sd.safetensors"), ErrorCode::InvalidFile);
}

TEST(adapters, lora_prompt_tags) {
  std::string dir = tmp_dir();
  write_st(dir + "/style-a.safetensors", {{"x.lora_down.weight", {1, 1}}, {"x.lora_up.weight", {1, 1}}}, 1);
  std::string p = "a castle <lora:style-a:0.8> on a hill <lora:STYLE-A>";
  auto l = extract_lora_tags(p, dir);
  EXPECT_EQ(l.size(), (size_t)2);
  EXPECT_EQ(p, std::string("a castle  on a hill "));
  EXPECT_NEAR(l[0].weight, 0.8f, 1e-6);
  EXPECT_NEAR(l[1].weight, 1.0f, 1e-6);
  std::string q = "x <lora:missing:1>";
  EXPECT_THROWS_CODE(extract_lora_tags(q, dir), ErrorCode::NotFound);
  q = "x <lora:style-a:abc>";
  EXPECT_THROWS_CODE(extract_lora_tags(q, dir), ErrorCode::InvalidArgument);
  q = "x <lora:style-a:1>";
  EXPECT_THROWS_CODE(extract_lora_tags(q, ""), ErrorCode::InvalidArgument);
  q = "no tags here";
  EXPECT_EQ(extract_lora_tags(q, "").size(), (size_t)0);
}

TEST(adapters, textual_inversion_embeddings) {
  // a tokenizer with a few merges; ids past the vocabulary carry the embedding vectors
  auto tok = ClipTokenizer::from_merges("#version: 0.2\nh e\nl l\nhe ll\n");
  TokenizedPrompt plain = tokenize_prompt(*tok, "hell o");
  std::vector<int> name = tok->encode("o");
  TokenizedPrompt rep = tokenize_prompt(*tok, "hell o", {{name, {9000, 9001}}});
  size_t at = 1;
  while (at < plain.ids.size() && plain.ids[at] != name[0]) ++at;
  EXPECT_TRUE(at > 1 && at < 10);
  for (size_t k = 1; k < at; ++k) EXPECT_EQ(rep.ids[k], plain.ids[k]);
  EXPECT_EQ(rep.ids[at], 9000);
  EXPECT_EQ(rep.ids[at + 1], 9001);
  // CLIP: an extra row equal to a vocabulary row gives the same encoding as that token
  WeightStore w(sdntest::make_tiny_sd(), cpu_backend());
  ClipTextModel clip(w);
  std::vector<int> ids(77, 5);
  ids[0] = 1;
  ids[3] = 17;
  Tensor ref = clip.encode(ids, 1, 1).contiguous();
  Tensor row = w.raw(T + "embeddings.token_embedding.weight").to_f32().slice0(17, 18).contiguous();
  ids[3] = clip.vocab();  // first extra row
  Tensor got = clip.encode(ids, 1, 1, &row).contiguous();
  double d = 0;
  for (int64_t k = 0; k < got.numel(); ++k) d = std::max(d, (double)std::fabs(got.f32()[k] - ref.f32()[k]));
  if (d > 1e-5) SDN_FAIL("extra row differs from the vocabulary row by " << d);
  // files: string_to_param (A1111 .pt layout, here as safetensors names) and emb_params; missing names
  std::string dir = tmp_dir() + "/emb";
  mkdir(dir.c_str(), 0755);
  write_st(dir + "/badhands.safetensors", {{"emb_params", {2, 64}}}, 5);
  write_st(dir + "/other.safetensors", {{"string_to_param.*", {1, 64}}}, 6);
  write_st(dir + "/wide.safetensors", {{"emb_params", {1, 768}}}, 7);
  std::string prompt = "photo, BadHands, embedding:other";
  auto embs = find_embeddings(prompt, dir, 64, "sd1");
  EXPECT_EQ(embs.size(), (size_t)2);
  EXPECT_EQ(prompt, std::string("photo, BadHands, other"));
  EXPECT_EQ(embs[0].vectors.shape[0], 2);
  std::string missing = "a embedding:nothere b";
  try {
    find_embeddings(missing, dir, 64, "sd1");
    SDN_FAIL("expected NotFound");
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == ErrorCode::NotFound);
    if (std::string(e.what()).find("nothere") == std::string::npos) SDN_FAIL("message: " << e.what());
  }
  std::string wide = "x wide";
  EXPECT_THROWS_CODE(find_embeddings(wide, dir, 64, "sd1"), ErrorCode::InvalidArgument);
  std::string tagged = "embedding:other";
  EXPECT_THROWS_CODE(find_embeddings(tagged, "", 64, "sd1"), ErrorCode::InvalidArgument);
}

// An SDXL ControlNet in the diffusers layout (controlnet_cond_embedding.*, down_blocks.*, mid_block.*,
// controlnet_down_blocks.N, controlnet_mid_block, add_embedding.*) read through the file reader's name mapping and run
// by ControlNetModel, against an independent float64 numpy forward of diffusers' ControlNetModel definition
// (test/helpers/controlnet_reference.py); the same for an SD 1.x one (conv proj_in/out, 8 heads, no add_embedding).
// The lllyasviel layout of the same values gives the same residuals bit for bit.
TEST(adapters, controlnet_diffusers_sdxl_and_sd1_vs_numpy_reference) {
  std::string why;
  if (run_cmd("python3 -c 'import numpy'", &why) != 0) {
    std::fprintf(stderr, "SKIP: adapters.controlnet_diffusers_sdxl_and_sd1_vs_numpy_reference: needs python3 with numpy (%s)\n",
                 why.c_str());
    return;
  }
  const std::string dir = tmp_dir(), root = repo_root();
  struct Case {
    const char* family;
    int heads, head_dim, outputs, adm, ctx;
  };
  // the tiny models of scripts/make-tiny-model.js: SDXL 3 levels (9 input blocks), heads of 16 channels, context
  // 32 + 32, adm 32 + 6 * 256; SD 1.x 4 levels (12 input blocks), 8 heads, context 32
  for (const Case& c : {Case{"sdxl", 0, 16, 10, 1568, 64}, Case{"sd1", 8, 64, 13, 0, 32}}) {
    const std::string fam = c.family;
    const std::string cn = dir + "/tiny-" + fam + "-cn.safetensors", cn_ll = dir + "/tiny-" + fam + "-cn-ll.safetensors";
    std::string out;
    for (const auto& fl : {std::make_pair(cn, "diffusers"), std::make_pair(cn_ll, "lllyasviel")}) {
      int rc = run_cmd("node \"" + root + "/scripts/make-tiny-controlnet.js\" \"" + fl.first + "\" --family " + fam +
                           " --layout " + fl.second + " --dtype f32",
                       &out);
      if (rc != 0) SDN_FAIL("make-tiny-controlnet.js failed: " << out);
    }
    auto f = WeightFile::open(cn);
    WeightStore w(f.get(), cpu_backend());
    ControlNetModel ctl(w, cn, c.heads, c.head_dim);
    EXPECT_EQ(ctl.layout(), std::string("diffusers"));
    EXPECT_EQ(ctl.family(), fam);
    EXPECT_EQ(ctl.outputs(), c.outputs);
    EXPECT_EQ(ctl.adm_channels(), c.adm);
    EXPECT_EQ(ctl.context_dim(), c.ctx);
    // inputs: a batch of 2 (as under CFG) with different timesteps and contexts
    const int64_t B = 2, T = 10, h = 16, wd = 16;
    Tensor x = Tensor::from_vector({B, 4, h, wd}, sdntest::random_vector((size_t)(B * 4 * h * wd), 61));
    Tensor ctx = Tensor::from_vector({B, T, (int64_t)c.ctx}, sdntest::random_vector((size_t)(B * T * c.ctx), 62));
    Tensor image = Tensor::from_vector({1, 3, 8 * h, 8 * wd},
                                       sdntest::random_vector((size_t)(3 * 64 * h * wd), 63, 0.f, 1.f));
    Tensor y;
    std::vector<float> t = {999.f, 500.5f};
    std::vector<std::pair<std::string, Tensor>> in = {
        {"x", x}, {"t", Tensor::from_vector({B}, t)}, {"context", ctx}, {"image", image}};
    if (c.adm) {
      y = Tensor::from_vector({B, (int64_t)c.adm}, sdntest::random_vector((size_t)(B * c.adm), 64));
      in.push_back({"y", y});
    }
    const std::string in_file = dir + "/cn-in-" + fam + ".safetensors", ref_file = dir + "/cn-ref-" + fam + ".safetensors";
    write_st_values(in_file, in);
    const float strength = 0.75f;
    const std::string heads = c.heads > 0 ? "--heads " + std::to_string(c.heads) : "--head-dim " + std::to_string(c.head_dim);
    int rc = run_cmd("python3 \"" + root + "/test/helpers/controlnet_reference.py\" \"" + cn + "\" \"" + in_file +
                         "\" \"" + ref_file + "\" " + heads + " --strength 0.75",
                     &out);
    if (rc != 0) SDN_FAIL("controlnet_reference.py failed: " << out);
    auto ref = WeightFile::open(ref_file);
    Tensor hint = ctl.hint(image);
    std::vector<Tensor> res = ctl.forward(x, t, ctx, hint, strength, nullptr, c.adm ? &y : nullptr);
    EXPECT_EQ((int)res.size(), c.outputs);
    double worst = 0, rms_ref = 0;
    auto compare = [&](const std::string& what, const Tensor& ours, const Tensor& theirs) {
      if (ours.sizes() != theirs.sizes())
        SDN_FAIL(fam << " " << what << ": " << ours.shape_str() << " vs the reference's " << theirs.shape_str());
      std::vector<double> r = f64(theirs);
      double e = rel_rms(f64(ours), r), n = 0;
      for (double v : r) n += v * v;
      if (!(e < 1e-4)) SDN_FAIL(fam << " " << what << ": relative RMS error " << e << " against the numpy reference");
      worst = std::max(worst, e);
      rms_ref = std::max(rms_ref, std::sqrt(n / (double)r.size()));
    };
    compare("hint", hint, ref->get("hint"));
    for (int i = 0; i < c.outputs; ++i)
      compare("residual " + std::to_string(i), res[(size_t)i], ref->get("residual_" + std::to_string(i)));
    std::printf("  %s ControlNet (diffusers layout) vs numpy float64: worst relative RMS error %.2e over the hint and %d "
                "residuals (largest residual RMS %.2f)\n", fam.c_str(), worst, c.outputs, rms_ref);
    // the lllyasviel layout of the same values: the same numbers
    {
      auto f2 = WeightFile::open(cn_ll);
      WeightStore w2(f2.get(), cpu_backend());
      ControlNetModel ll(w2, cn_ll, c.heads, c.head_dim);
      EXPECT_EQ(ll.layout(), std::string("lllyasviel"));
      EXPECT_EQ(ll.family(), fam);
      std::vector<Tensor> r2 = ll.forward(x, t, ctx, ll.hint(image), strength, nullptr, c.adm ? &y : nullptr);
      for (int i = 0; i < c.outputs; ++i)
        if (f64(res[(size_t)i]) != f64(r2[(size_t)i])) SDN_FAIL(fam << ": the lllyasviel layout gives another residual " << i);
    }
    if (c.adm) {
      // SDXL: the vector conditioning is required, of its width
      EXPECT_THROWS_CODE(ctl.forward(x, t, ctx, hint, 1.f), ErrorCode::InvalidArgument);
      Tensor bad = Tensor::zeros({B, (int64_t)c.adm - 1});
      EXPECT_THROWS_CODE(ctl.forward(x, t, ctx, hint, 1.f, nullptr, &bad), ErrorCode::InvalidArgument);
      // a ControlNet-Union file is refused, not run without its extra blocks
      std::map<std::string, Tensor> all;
      for (const std::string& n : f->names()) all[n] = f->get(n);
      all["model.diffusion_model.task_embedding"] = Tensor::zeros({8, 32});
      WeightStore u(all, cpu_backend());
      EXPECT_THROWS_CODE(ControlNetModel(u, "union.safetensors", c.heads, c.head_dim), ErrorCode::Unsupported);
    } else {
      Tensor yy = Tensor::zeros({B, 1568});
      EXPECT_THROWS_CODE(ctl.forward(x, t, ctx, hint, 1.f, nullptr, &yy), ErrorCode::InvalidArgument);
    }
  }
}
