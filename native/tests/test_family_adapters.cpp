// Adapters on the SD 2.x and SDXL layouts (tiny in-memory models, tiny_sd.h):
//  * textual inversion: SD 2.x embeddings (emb_params) go into OpenCLIP-H's token rows, SDXL embeddings put clip_l
//    into CLIP-L's and clip_g into bigG's; checked at the embedding level (an embedding made of vocabulary rows
//    gives exactly the conditioning of the prompt with those tokens), and files of the wrong layout/width are
//    typed errors naming the file;
//  * LoRA: generated kohya (lora_te_/lora_te1_/lora_te2_, lora_unet_ with diffusers names for SD 2.x and LDM names
//    for SDXL) and diffusers/PEFT (unet., text_encoder., text_encoder_2.) files covering every matrix and
//    convolution of the tiny U-Net and text encoders: every pair is matched to the weight it was generated from,
//    and the merged weight equals W + scale * up @ down computed here in double.
// The names the files use are written here from the LDM names by our own inverse mapping (LDM -> diffusers /
// kohya), independent of the engine's forward mapping (formats/names.cpp, models/lora.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <fstream>

#include "backends/backend.h"
#include "models/conditioning.h"
#include "models/lora.h"
#include "models/weights.h"
#include "pipeline/adapters.h"
#include "pipeline/conditioner.h"
#include "sdn/error.h"
#include "st_writer.h"
#include "test.h"
#include "text/tokenizer.h"
#include "tiny_sd.h"

using namespace sdn;

namespace {

using TensorMap = std::map<std::string, Tensor>;

std::string tmp_dir(const std::string& sub) {
  std::string d = "/tmp/sdn-family-adapters-" + std::to_string((long)getpid());
  mkdir(d.c_str(), 0755);
  d += "/" + sub;
  mkdir(d.c_str(), 0755);
  return d;
}

using sdntest::StTensor;

// A safetensors file of F32 tensors with the given values.
void write_st(const std::string& path, const std::vector<StTensor>& ts) { sdntest::write_f32_safetensors(path, ts); }

std::vector<float> f32(const Tensor& t) {
  Tensor f = t.to_f32().contiguous();
  return std::vector<float>(f.f32(), f.f32() + f.numel());
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 1e30;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, (double)std::fabs(a[i] - b[i]));
  return d;
}

// Rows `ids` of a token-embedding table, as F32 values [ids.size(), D].
std::vector<float> rows_of(const Tensor& table, const std::vector<int>& ids) {
  std::vector<float> t = f32(table), out;
  const int64_t D = table.shape[1];
  for (int id : ids) out.insert(out.end(), t.begin() + id * D, t.begin() + (id + 1) * D);
  return out;
}

// Columns [c0, c1) of a [1, T, D] context.
std::vector<float> columns(const Tensor& ctx, int64_t c0, int64_t c1) {
  std::vector<float> v = f32(ctx), out;
  const int64_t D = ctx.shape[2], T = ctx.shape[1];
  for (int64_t t = 0; t < T; ++t) out.insert(out.end(), v.begin() + t * D + c0, v.begin() + t * D + c1);
  return out;
}

const std::string kTe = "cond_stage_model.transformer.text_model.";
const std::string kTe2 = "cond_stage_model.1.transformer.text_model.";
const std::string kU = "model.diffusion_model.";

GenerateParams params_with(const std::string& dir) {
  GenerateParams p;
  p.width = 64;
  p.height = 64;
  p.embedding_dir = dir;
  return p;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return std::string(e.code() == ErrorCode::InvalidArgument ? "InvalidArgument: " : "other: ") + e.what();
  }
  return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(family_adapters, sd2_textual_inversion_goes_into_openclip_h) {
  sdntest::TinySdConfig c;
  c.family = "sd2";
  WeightStore w(sdntest::make_tiny_sd(c), cpu_backend());
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  FamilyConditioner cond(w, tok, ModelFamily::SD2, 0);
  const std::vector<int> the = tok->encode("the"), andw = tok->encode("and");
  EXPECT_EQ(the.size(), (size_t)1);
  EXPECT_EQ(andw.size(), (size_t)1);
  const Tensor& table = w.raw(kTe + "embeddings.token_embedding.weight");
  const std::string dir = tmp_dir("sd2-emb");
  // an embedding made of the rows of "the" and "and" (A1111 .safetensors layout: emb_params)
  write_st(dir + "/myemb.safetensors", {{"emb_params", {2, c.ctx}, rows_of(table, {the[0], andw[0]})}});
  // the same, A1111 .pt layout name (string_to_param.*), and ComfyUI's clip_h key
  write_st(dir + "/pt-style.safetensors", {{"string_to_param.*", {2, c.ctx}, rows_of(table, {the[0], andw[0]})}});
  write_st(dir + "/h-style.safetensors", {{"clip_h", {2, c.ctx}, rows_of(table, {the[0], andw[0]})}});
  const std::vector<float> ref = f32(cond.encode("a the and cat", params_with(dir)).context);
  for (const char* p : {"a myemb cat", "a embedding:pt-style cat", "a H-Style cat"}) {
    const double d = max_diff(f32(cond.encode(p, params_with(dir)).context), ref);
    if (d != 0.0) SDN_FAIL("'" << p << "' differs from 'a the and cat' by " << d);
  }
  // without the folder the name is ordinary text (a different conditioning)
  EXPECT_TRUE(max_diff(f32(cond.encode("a myemb cat", params_with("")).context), ref) > 1e-3);
  // other random vectors: the conditioning changes
  write_st(dir + "/rnd.safetensors", {{"emb_params", {3, c.ctx}, sdntest::random_vector((size_t)(3 * c.ctx), 5)}});
  EXPECT_TRUE(max_diff(f32(cond.encode("a rnd cat", params_with(dir)).context), ref) > 1e-3);

  // files that do not fit: another width, an SDXL file; typed errors naming the file and what to do
  const std::string bad = tmp_dir("sd2-bad");
  write_st(bad + "/wide.safetensors", {{"emb_params", {1, 768}, std::vector<float>(768, 0.1f)}});
  write_st(bad + "/xl.safetensors", {{"clip_l", {1, c.ctx}, std::vector<float>((size_t)c.ctx, 0.1f)},
                                     {"clip_g", {1, 96}, std::vector<float>(96, 0.1f)}});
  std::string e = error_of([&] { cond.encode("a wide cat", params_with(bad)); });
  if (!has(e, "InvalidArgument") || !has(e, "wide.safetensors") || !has(e, "768 wide") || !has(e, "--embd-dir"))
    SDN_FAIL("width mismatch: " << e);
  e = error_of([&] { cond.encode("a xl cat", params_with(bad)); });
  if (!has(e, "InvalidArgument") || !has(e, "xl.safetensors") || !has(e, "SDXL embedding") || !has(e, "SD 2.x"))
    SDN_FAIL("SDXL file on SD 2.x: " << e);
  // the conditioner still works afterwards
  EXPECT_TRUE(max_diff(f32(cond.encode("a the and cat", params_with(dir)).context), ref) == 0.0);
}

TEST(family_adapters, sdxl_textual_inversion_clip_l_and_clip_g) {
  sdntest::TinySdConfig c;
  c.family = "sdxl";
  c.ctx2 = 96;  // two different widths, so a table in the wrong encoder cannot fit
  WeightStore w(sdntest::make_tiny_sd(c), cpu_backend());
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  FamilyConditioner cond(w, tok, ModelFamily::SDXL, 0);
  const int the = tok->encode("the")[0], andw = tok->encode("and")[0];
  const Tensor& t1 = w.raw(kTe + "embeddings.token_embedding.weight");
  const Tensor& t2 = w.raw(kTe2 + "embeddings.token_embedding.weight");
  const std::string dir = tmp_dir("sdxl-emb");
  // clip_l = CLIP-L rows of "the and", clip_g = bigG rows of "and the": CLIP-L must see "the and", bigG "and the"
  write_st(dir + "/myemb.safetensors", {{"clip_g", {2, c.ctx2}, rows_of(t2, {andw, the})},
                                        {"clip_l", {2, c.ctx}, rows_of(t1, {the, andw})}});
  Conditioning got = cond.encode("a myemb cat", params_with(dir));
  Conditioning a = cond.encode("a the and cat", params_with(dir));
  Conditioning b = cond.encode("a and the cat", params_with(dir));
  const int64_t D = c.ctx + c.ctx2;
  EXPECT_EQ(got.context.shape[2], D);
  double d1 = max_diff(columns(got.context, 0, c.ctx), columns(a.context, 0, c.ctx));
  double d2 = max_diff(columns(got.context, c.ctx, D), columns(b.context, c.ctx, D));
  if (d1 != 0.0 || d2 != 0.0) SDN_FAIL("CLIP-L part differs by " << d1 << ", bigG part by " << d2);
  // the pooled bigG output (in y) is the one of "and the" too: the EOS position is found past the extra ids
  double dy = max_diff(f32(got.y), f32(b.y));
  if (dy != 0.0) SDN_FAIL("y differs by " << dy);
  // and the routing matters: the two halves differ from the other prompt's
  EXPECT_TRUE(max_diff(columns(got.context, 0, c.ctx), columns(b.context, 0, c.ctx)) > 1e-3);
  EXPECT_TRUE(max_diff(columns(got.context, c.ctx, D), columns(a.context, c.ctx, D)) > 1e-3);
  // the negative prompt path uses it too; emphasis applies to its vectors
  EXPECT_TRUE(max_diff(f32(cond.encode_negative("a myemb cat", params_with(dir)).context), f32(got.context)) == 0.0);
  EXPECT_TRUE(max_diff(f32(cond.encode("a (myemb:1.3) cat", params_with(dir)).context),
                       f32(got.context)) > 1e-4);

  // files that do not fit, each an InvalidArgument naming the file and what to do; the model stays usable
  const std::string bad = tmp_dir("sdxl-bad");
  write_st(bad + "/sd1emb.safetensors", {{"emb_params", {1, c.ctx}, std::vector<float>((size_t)c.ctx, 0.1f)}});
  write_st(bad + "/onlyl.safetensors", {{"clip_l", {1, c.ctx}, std::vector<float>((size_t)c.ctx, 0.1f)}});
  write_st(bad + "/swapped.safetensors", {{"clip_l", {1, c.ctx2}, std::vector<float>((size_t)c.ctx2, 0.1f)},
                                          {"clip_g", {1, c.ctx}, std::vector<float>((size_t)c.ctx, 0.1f)}});
  write_st(bad + "/counts.safetensors", {{"clip_l", {1, c.ctx}, std::vector<float>((size_t)c.ctx, 0.1f)},
                                         {"clip_g", {2, c.ctx2}, std::vector<float>((size_t)(2 * c.ctx2), 0.1f)}});
  struct Case {
    const char* name;
    const char* says;
  } cases[] = {{"sd1emb", "needs an embedding with clip_l"}, {"onlyl", "no clip_g"}, {"swapped", "clip_l [1, 96]"}};
  for (const Case& k : cases) {
    std::string e = error_of([&] { cond.encode(std::string("a ") + k.name + " cat", params_with(bad)); });
    if (!has(e, "InvalidArgument") || !has(e, std::string(k.name) + ".safetensors") || !has(e, k.says) ||
        !has(e, "embeddingDir"))
      SDN_FAIL(k.name << ": " << e);
  }
  EXPECT_THROWS_CODE(cond.encode("a counts cat", params_with(bad)), ErrorCode::InvalidFile);
  EXPECT_THROWS_CODE(cond.encode("a embedding:nothere cat", params_with(bad)), ErrorCode::NotFound);
  EXPECT_TRUE(max_diff(f32(cond.encode("a myemb cat", params_with(dir)).context), f32(got.context)) == 0.0);

  // an SDXL file on SD 1.x uses its clip_l (the same CLIP ViT-L; ComfyUI's rule)
  std::string p = "a myemb";
  auto embs = find_embeddings(p, dir, c.ctx, "sd1");
  EXPECT_EQ(embs.size(), (size_t)1);
  EXPECT_TRUE(max_diff(f32(embs[0].vectors), rows_of(t1, {the, andw})) == 0.0);
  EXPECT_TRUE(!embs[0].vectors2.defined());
}

namespace {

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> p;
  size_t b = 0;
  for (;;) {
    size_t e = s.find('.', b);
    p.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) return p;
    b = e + 1;
  }
}
std::string join_from(const std::vector<std::string>& p, size_t from) {
  std::string s;
  for (size_t i = from; i < p.size(); ++i) s += (s.empty() ? "" : ".") + p[i];
  return s;
}
std::string underscores(std::string s) {
  for (char& ch : s)
    if (ch == '.') ch = '_';
  return s;
}

// LDM U-Net module (after model.diffusion_model., without .weight) -> diffusers module. Our own inverse of the
// diffusers layout (2 resnets per down level, 3 per up level; up_blocks.0 = the lowest resolution).
std::string diffusers_unet(const std::string& ldm) {
  auto res = [](const std::string& r) {
    if (r == "in_layers.2") return std::string("conv1");
    if (r == "out_layers.3") return std::string("conv2");
    if (r == "emb_layers.1") return std::string("time_emb_proj");
    if (r == "skip_connection") return std::string("conv_shortcut");
    return "UNKNOWN-" + r;
  };
  if (ldm == "time_embed.0") return "time_embedding.linear_1";
  if (ldm == "time_embed.2") return "time_embedding.linear_2";
  if (ldm == "label_emb.0.0") return "add_embedding.linear_1";
  if (ldm == "label_emb.0.2") return "add_embedding.linear_2";
  if (ldm == "input_blocks.0.0") return "conv_in";
  if (ldm == "out.2") return "conv_out";
  std::vector<std::string> p = split_dots(ldm);
  const int n = p.size() > 1 ? std::atoi(p[1].c_str()) : -1;
  if (p[0] == "input_blocks") {
    const std::string lvl = std::to_string((n - 1) / 3), j = std::to_string((n - 1) % 3);
    if (p[3] == "op") return "down_blocks." + lvl + ".downsamplers.0.conv";
    if (p[2] == "0") return "down_blocks." + lvl + ".resnets." + j + "." + res(join_from(p, 3));
    return "down_blocks." + lvl + ".attentions." + j + "." + join_from(p, 3);
  }
  if (p[0] == "middle_block") {
    if (p[1] == "1") return "mid_block.attentions.0." + join_from(p, 2);
    return std::string("mid_block.resnets.") + (p[1] == "0" ? "0." : "1.") + res(join_from(p, 2));
  }
  if (p[0] == "output_blocks") {
    const std::string lvl = std::to_string(n / 3), j = std::to_string(n % 3);
    if (p[2] == "0") return "up_blocks." + lvl + ".resnets." + j + "." + res(join_from(p, 3));
    if (p[3] == "conv") return "up_blocks." + lvl + ".upsamplers.0.conv";
    return "up_blocks." + lvl + ".attentions." + j + "." + join_from(p, 3);
  }
  return "UNKNOWN-" + ldm;
}

struct LoraTarget {
  std::string weight;  // the store's weight it must land on
  std::string module;  // the module name written to the file (without the pair suffix)
  std::vector<int64_t> shape;
};

enum class Style { Kohya, Peft };

// One LoRA pair for every matrix and convolution of the tiny model's U-Net and text encoder(s), named as `style`
// writes them for `family`. Fused OpenCLIP q/k/v get three pairs (q_proj, k_proj, v_proj) aimed at their slices.
std::vector<LoraTarget> lora_targets(const TensorMap& m, const std::string& family, Style style) {
  std::vector<LoraTarget> out;
  for (const auto& kv : m) {
    const std::string& n = kv.first;
    const Tensor& t = kv.second;
    if (n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0 || (t.ndim != 2 && t.ndim != 4)) continue;
    const std::string mod = n.substr(0, n.size() - 7);
    if (mod.compare(0, kU.size(), kU) == 0) {
      const std::string ldm = mod.substr(kU.size());
      std::string name;
      if (style == Style::Kohya)
        name = "lora_unet_" + underscores(family == "sdxl" ? ldm : diffusers_unet(ldm));  // sd-scripts' choice
      else
        name = "unet." + diffusers_unet(ldm);
      out.push_back({n, name, t.sizes()});
      continue;
    }
    const bool te2 = mod.compare(0, kTe2.size(), kTe2) == 0;
    if (!te2 && mod.compare(0, kTe.size(), kTe) != 0) continue;  // VAE
    const std::string inner = mod.substr((te2 ? kTe2 : kTe).size());
    if (inner.compare(0, 11, "embeddings.") == 0) continue;     // token / position tables: not LoRA targets
    std::vector<std::string> inners = {inner};
    std::vector<int64_t> shape = t.sizes();
    const size_t f = inner.find("self_attn.in_proj");
    if (f != std::string::npos) {
      const std::string pre = inner.substr(0, f);
      inners = {pre + "self_attn.q_proj", pre + "self_attn.k_proj", pre + "self_attn.v_proj"};
      shape[0] /= 3;
    }
    for (const std::string& in : inners) {
      std::string name;
      if (style == Style::Kohya)
        name = std::string(family != "sdxl" ? "lora_te_" : te2 ? "lora_te2_" : "lora_te1_") +
               underscores("text_model." + in);
      else
        name = std::string(te2 ? "text_encoder_2." : "text_encoder.") + "text_model." + in;
      out.push_back({(te2 ? kTe2 : kTe) + in + ".weight", name, shape});
    }
  }
  return out;
}

struct WrittenLora {
  std::string path;
  std::vector<std::vector<float>> up, down;  // per target, row-major [out, r] / [r, in*kh*kw]
  float alpha = 0.f;                         // 0: none written
};

WrittenLora write_lora(const std::string& path, const std::vector<LoraTarget>& ts, Style style, int r) {
  WrittenLora wl;
  wl.path = path;
  wl.alpha = style == Style::Kohya ? 1.f : 0.f;
  std::vector<StTensor> st;
  uint32_t seed = 1000;
  for (const LoraTarget& t : ts) {
    const int64_t out = t.shape[0];
    int64_t in = 1;
    for (size_t k = 1; k < t.shape.size(); ++k) in *= t.shape[k];
    std::vector<float> up = sdntest::random_vector((size_t)(out * r), seed++, -0.5f, 0.5f);
    std::vector<float> down = sdntest::random_vector((size_t)(r * in), seed++, -0.5f, 0.5f);
    std::vector<int64_t> ds = t.shape, us = {out, r};
    ds[0] = r;
    if (t.shape.size() == 4) us = {out, r, 1, 1};
    const char* dn = style == Style::Kohya ? ".lora_down.weight" : ".lora_A.weight";
    const char* un = style == Style::Kohya ? ".lora_up.weight" : ".lora_B.weight";
    st.push_back({t.module + dn, ds, down});
    st.push_back({t.module + un, us, up});
    if (style == Style::Kohya) st.push_back({t.module + ".alpha", {}, {wl.alpha}});
    wl.up.push_back(std::move(up));
    wl.down.push_back(std::move(down));
  }
  write_st(path, st);
  return wl;
}

// Builds the family's text conditioner (which splits fused q/k/v into slices of the store, as at load), matches
// a generated LoRA of `style`, merges it and compares every merged weight with W + scale * up @ down in double.
void check_full_lora(const std::string& family, Style style, bool fused_qkv = true) {
  sdntest::TinySdConfig c;
  c.family = family;
  c.fused_qkv = fused_qkv;  // OpenCLIP towers: fused in_proj (single files) or split q/k/v (diffusers folders)
  if (family == "sdxl") c.ctx2 = 96;
  TensorMap m = sdntest::make_tiny_sd(c);
  for (auto& kv : m) kv.second = kv.second.to_f32();  // f32 weights: the merge must equal the f64 reference
  WeightStore w(m, cpu_backend());
  auto tok = ClipTokenizer::from_merges(sdntest::tiny_merges());
  TextConditioner cond(w, tok, model_family_from_name(family));
  const std::vector<LoraTarget> ts = lora_targets(m, family, style);
  const int r = 2;
  const std::string what = family + (style == Style::Kohya ? " kohya" : " peft") + (fused_qkv ? "" : " (split q/k/v)");
  const WrittenLora wl = write_lora(tmp_dir("lora") + "/" + family + (style == Style::Kohya ? "-kohya" : "-peft") +
                                        ".safetensors", ts, style, r);
  auto lf = LoraFile::open(wl.path);
  const float user = 0.7f;
  LoraMatch lm = lf->match(w, user, family);
  std::printf("  %s: %zu pairs generated, %lld matched, %zu unmatched, %zu unsupported\n", what.c_str(), ts.size(),
              (long long)lm.matched, lm.unmatched.size(), lm.unsupported.size());
  for (size_t k = 0; k < lm.unmatched.size() && k < 10; ++k) std::printf("    unmatched: %s\n", lm.unmatched[k].c_str());
  EXPECT_EQ(lm.pairs, (int64_t)ts.size());
  EXPECT_EQ(lm.matched, (int64_t)ts.size());
  EXPECT_EQ(lm.unmatched.size(), (size_t)0);
  EXPECT_EQ(lm.unsupported.size(), (size_t)0);
  if (family == "sdxl") EXPECT_EQ(lm.family, std::string("sdxl"));  // (tiny SD 2.x widths say no family)
  for (const LoraTarget& t : ts) {
    auto it = lm.deltas.find(t.weight);
    if (it == lm.deltas.end() || it->second.size() != 1) SDN_FAIL(what << ": " << t.module << " not matched to " << t.weight);
  }
  const TensorMap before = [&] {
    TensorMap b;
    for (const LoraTarget& t : ts) b[t.weight] = w.raw(t.weight).contiguous();
    return b;
  }();
  w.set_deltas(merge_matches({lm}));
  const double scale = style == Style::Kohya ? user * wl.alpha / r : user;
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < ts.size(); ++i) {
    const LoraTarget& t = ts[i];
    std::vector<float> W = f32(before.at(t.weight));
    const int64_t rows = t.shape[0], K = (int64_t)W.size() / rows;
    std::vector<float> got = f32(w.adapted(t.weight));
    if ((int64_t)got.size() != rows * K) SDN_FAIL(what << ": " << t.weight << " has " << got.size() << " values");
    double e = 0, n = 0;
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t k = 0; k < K; ++k) {
        double s = 0;
        for (int j = 0; j < r; ++j) s += (double)wl.up[i][(size_t)(o * r + j)] * wl.down[i][(size_t)(j * K + k)];
        const double ref = W[(size_t)(o * K + k)] + scale * s;
        e = std::max(e, std::fabs(got[(size_t)(o * K + k)] - ref));
        n = std::max(n, std::fabs(ref));
      }
    if (e / n > worst) worst = e / n, worst_name = t.weight;
  }
  std::printf("  %s: worst merged-weight error %.2e (relative to max |W'|) at %s\n", what.c_str(), worst,
              worst_name.c_str());
  if (worst > 1e-6) SDN_FAIL(what << ": merged weight differs from W + scale*up@down by " << worst << " at " << worst_name);
  // the fused q/k/v the encoder runs are the merged slices: the conditioning changes with the text-encoder pairs
  w.set_deltas({});
  TextConditioning plain = cond.encode("the and", 0, {});
  w.set_deltas(merge_matches({lm}));
  TextConditioning merged = cond.encode("the and", 0, {});
  EXPECT_TRUE(max_diff(f32(plain.context), f32(merged.context)) > 1e-3);
}

}  // namespace

TEST(family_adapters, sd2_lora_kohya_every_pair_matched_and_merged) { check_full_lora("sd2", Style::Kohya); }
TEST(family_adapters, sd2_lora_peft_every_pair_matched_and_merged) { check_full_lora("sd2", Style::Peft); }
TEST(family_adapters, sdxl_lora_kohya_every_pair_matched_and_merged) { check_full_lora("sdxl", Style::Kohya); }
TEST(family_adapters, sdxl_lora_peft_every_pair_matched_and_merged) { check_full_lora("sdxl", Style::Peft); }
TEST(family_adapters, sdxl_lora_on_split_qkv_text_encoder) {
  check_full_lora("sdxl", Style::Kohya, false);
  check_full_lora("sdxl", Style::Peft, false);
}

TEST(family_adapters, sdxl_lora_on_sd1_or_sd2_is_a_typed_error) {
  sdntest::TinySdConfig cx;
  cx.family = "sdxl";
  const TensorMap xl = sdntest::make_tiny_sd(cx);
  for (Style style : {Style::Kohya, Style::Peft}) {
    const std::string path = tmp_dir("lora-xl") + (style == Style::Kohya ? "/xl-kohya.safetensors" : "/xl-peft.safetensors");
    write_lora(path, lora_targets(xl, "sdxl", style), style, 2);
    auto lf = LoraFile::open(path);
    for (const char* fam : {"sd1", "sd2"}) {
      sdntest::TinySdConfig c;
      c.family = fam;
      WeightStore w(sdntest::make_tiny_sd(c), cpu_backend());
      std::string e = error_of([&] { lf->match(w, 1.f, fam); });
      if (!has(e, "InvalidArgument") || !has(e, path) || !has(e, "this LoRA is for SDXL") ||
          !has(e, std::string("the model is ") + (std::string(fam) == "sd1" ? "SD 1.x" : "SD 2.x")))
        SDN_FAIL(fam << ": " << e);
      EXPECT_TRUE(w.deltas().empty());
    }
  }
}
