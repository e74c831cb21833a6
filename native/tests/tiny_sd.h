// In-memory tiny SD weights for model/pipeline tests: the SD1.x, SD2.x or SDXL layout (same canonical tensor
// names and block structure as a real checkpoint after name mapping) with small widths, random values (seeded),
// stored as F16 matrices and F32 vectors. Built here so the model tests need no files.
//  sd2:  linear proj_in/out, OpenCLIP text encoder (fused in_proj q/k/v, a text_projection it does not use).
//  sdxl: linear proj_in/out, no attention at level 0, transformer depth per level, label_emb (adm =
//        projection width + 6 * 256), a CLIP-L style first encoder and an OpenCLIP second encoder under
//        cond_stage_model.1. with a text_projection (OpenCLIP layout [width, proj]); context = ctx + ctx2.
#pragma once
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace sdntest {

struct TinySdConfig {
  int unet_ch = 32;
  std::vector<int> unet_mult = {1, 2};
  int ctx = 64;  // CLIP width = cross-attention context width
  int clip_layers = 3;
  int vocab = 600;
  int positions = 77;
  int vae_ch = 32;
  std::vector<int> vae_mult = {1, 2, 2, 2};  // 3 upsamplings: 8x, like SD
  uint32_t seed = 1;
  std::string family = "sd1";  // "sd1", "sd2", "sdxl"
  std::vector<int> depth = {1, 2};  // sdxl: transformer depth per level (level 0 has none); middle: the last one
  int ctx2 = 64;                    // sdxl: width of the second text encoder
  int proj = 32;                    // sdxl: its text projection width (pooled output)
  bool fused_qkv = true;            // OpenCLIP encoders with fused in_proj (false: separate q/k/v, HF layout)
};

inline std::map<std::string, sdn::Tensor> make_tiny_sd(const TinySdConfig& c = {}) {
  std::map<std::string, std::vector<int64_t>> shapes;
  auto S = [&](const std::string& n, std::vector<int64_t> s) { shapes[n] = std::move(s); };
  // ---- U-Net
  {
    const std::string P = "model.diffusion_model.";
    const int64_t ch = c.unet_ch, te = ch * 4;
    const bool xl = c.family == "sdxl", linear_proj = c.family != "sd1";
    const int64_t uctx = xl ? c.ctx + c.ctx2 : c.ctx;
    if (xl) {
      const int64_t adm = c.proj + 6 * 256;
      S(P + "label_emb.0.0.weight", {te, adm}); S(P + "label_emb.0.0.bias", {te});
      S(P + "label_emb.0.2.weight", {te, te}); S(P + "label_emb.0.2.bias", {te});
    }
    S(P + "time_embed.0.weight", {te, ch}); S(P + "time_embed.0.bias", {te});
    S(P + "time_embed.2.weight", {te, te}); S(P + "time_embed.2.bias", {te});
    S(P + "input_blocks.0.0.weight", {ch, 4, 3, 3}); S(P + "input_blocks.0.0.bias", {ch});
    auto res = [&](const std::string& p, int64_t cin, int64_t cout) {
      S(p + "in_layers.0.weight", {cin}); S(p + "in_layers.0.bias", {cin});
      S(p + "in_layers.2.weight", {cout, cin, 3, 3}); S(p + "in_layers.2.bias", {cout});
      S(p + "emb_layers.1.weight", {cout, te}); S(p + "emb_layers.1.bias", {cout});
      S(p + "out_layers.0.weight", {cout}); S(p + "out_layers.0.bias", {cout});
      S(p + "out_layers.3.weight", {cout, cout, 3, 3}); S(p + "out_layers.3.bias", {cout});
      if (cin != cout) { S(p + "skip_connection.weight", {cout, cin, 1, 1}); S(p + "skip_connection.bias", {cout}); }
    };
    auto attn = [&](const std::string& p, int64_t ch2, int depth) {
      S(p + "norm.weight", {ch2}); S(p + "norm.bias", {ch2});
      std::vector<int64_t> pshape = linear_proj ? std::vector<int64_t>{ch2, ch2} : std::vector<int64_t>{ch2, ch2, 1, 1};
      S(p + "proj_in.weight", pshape); S(p + "proj_in.bias", {ch2});
      for (int d = 0; d < depth; ++d) {
        std::string b = p + "transformer_blocks." + std::to_string(d) + ".";
        for (int a = 1; a <= 2; ++a) {
          std::string an = b + "attn" + std::to_string(a);
          int64_t kv = a == 1 ? ch2 : uctx;
          S(an + ".to_q.weight", {ch2, ch2}); S(an + ".to_k.weight", {ch2, kv}); S(an + ".to_v.weight", {ch2, kv});
          S(an + ".to_out.0.weight", {ch2, ch2}); S(an + ".to_out.0.bias", {ch2});
        }
        S(b + "ff.net.0.proj.weight", {ch2 * 8, ch2}); S(b + "ff.net.0.proj.bias", {ch2 * 8});
        S(b + "ff.net.2.weight", {ch2, ch2 * 4}); S(b + "ff.net.2.bias", {ch2});
        for (const char* n : {"norm1", "norm2", "norm3"}) { S(b + n + ".weight", {ch2}); S(b + n + ".bias", {ch2}); }
      }
      S(p + "proj_out.weight", pshape); S(p + "proj_out.bias", {ch2});
    };
    const int L0 = (int)c.unet_mult.size();
    auto has_attn = [&](int lvl) { return xl ? lvl >= 1 : lvl < L0 - 1; };
    auto depth_of = [&](int lvl) { return xl ? c.depth[std::min<size_t>(lvl, c.depth.size() - 1)] : 1; };
    std::vector<int64_t> skips = {ch};
    int64_t cur = ch;
    int i = 1;
    const int L = (int)c.unet_mult.size();
    for (int lvl = 0; lvl < L; ++lvl) {
      for (int r = 0; r < 2; ++r) {
        res(P + "input_blocks." + std::to_string(i) + ".0.", cur, ch * c.unet_mult[lvl]);
        cur = ch * c.unet_mult[lvl];
        if (has_attn(lvl)) attn(P + "input_blocks." + std::to_string(i) + ".1.", cur, depth_of(lvl));
        skips.push_back(cur);
        ++i;
      }
      if (lvl < L - 1) {
        S(P + "input_blocks." + std::to_string(i) + ".0.op.weight", {cur, cur, 3, 3});
        S(P + "input_blocks." + std::to_string(i) + ".0.op.bias", {cur});
        skips.push_back(cur);
        ++i;
      }
    }
    res(P + "middle_block.0.", cur, cur); attn(P + "middle_block.1.", cur, depth_of(L - 1));
    res(P + "middle_block.2.", cur, cur);
    int o = 0;
    for (int lvl = L - 1; lvl >= 0; --lvl)
      for (int j = 0; j < 3; ++j) {
        std::string ob = P + "output_blocks." + std::to_string(o) + ".";
        res(ob + "0.", cur + skips.back(), ch * c.unet_mult[lvl]);
        skips.pop_back();
        cur = ch * c.unet_mult[lvl];
        int k = 1;
        if (has_attn(lvl)) { attn(ob + "1.", cur, depth_of(lvl)); k = 2; }
        if (lvl > 0 && j == 2) {
          S(ob + std::to_string(k) + ".conv.weight", {cur, cur, 3, 3}); S(ob + std::to_string(k) + ".conv.bias", {cur});
        }
        ++o;
      }
    S(P + "out.0.weight", {ch}); S(P + "out.0.bias", {ch});
    S(P + "out.2.weight", {4, ch, 3, 3}); S(P + "out.2.bias", {4});
  }
  // ---- VAE
  {
    const std::string P = "first_stage_model.";
    const int64_t ch = c.vae_ch;
    const int L = (int)c.vae_mult.size();
    const int64_t top = ch * c.vae_mult.back();
    auto rb = [&](const std::string& p, int64_t cin, int64_t cout) {
      S(p + "norm1.weight", {cin}); S(p + "norm1.bias", {cin});
      S(p + "conv1.weight", {cout, cin, 3, 3}); S(p + "conv1.bias", {cout});
      S(p + "norm2.weight", {cout}); S(p + "norm2.bias", {cout});
      S(p + "conv2.weight", {cout, cout, 3, 3}); S(p + "conv2.bias", {cout});
      if (cin != cout) { S(p + "nin_shortcut.weight", {cout, cin, 1, 1}); S(p + "nin_shortcut.bias", {cout}); }
    };
    auto at = [&](const std::string& p, int64_t ch2) {
      S(p + "norm.weight", {ch2}); S(p + "norm.bias", {ch2});
      for (const char* n : {"q", "k", "v", "proj_out"}) {
        S(p + n + ".weight", {ch2, ch2, 1, 1}); S(p + n + ".bias", {ch2});
      }
    };
    S(P + "encoder.conv_in.weight", {ch, 3, 3, 3}); S(P + "encoder.conv_in.bias", {ch});
    int64_t cur = ch;
    for (int i = 0; i < L; ++i) {
      for (int j = 0; j < 2; ++j) {
        rb(P + "encoder.down." + std::to_string(i) + ".block." + std::to_string(j) + ".", cur, ch * c.vae_mult[i]);
        cur = ch * c.vae_mult[i];
      }
      if (i < L - 1) {
        S(P + "encoder.down." + std::to_string(i) + ".downsample.conv.weight", {cur, cur, 3, 3});
        S(P + "encoder.down." + std::to_string(i) + ".downsample.conv.bias", {cur});
      }
    }
    rb(P + "encoder.mid.block_1.", top, top); at(P + "encoder.mid.attn_1.", top); rb(P + "encoder.mid.block_2.", top, top);
    S(P + "encoder.norm_out.weight", {top}); S(P + "encoder.norm_out.bias", {top});
    S(P + "encoder.conv_out.weight", {8, top, 3, 3}); S(P + "encoder.conv_out.bias", {8});
    S(P + "quant_conv.weight", {8, 8, 1, 1}); S(P + "quant_conv.bias", {8});
    S(P + "post_quant_conv.weight", {4, 4, 1, 1}); S(P + "post_quant_conv.bias", {4});
    S(P + "decoder.conv_in.weight", {top, 4, 3, 3}); S(P + "decoder.conv_in.bias", {top});
    rb(P + "decoder.mid.block_1.", top, top); at(P + "decoder.mid.attn_1.", top); rb(P + "decoder.mid.block_2.", top, top);
    cur = top;
    for (int i = L - 1; i >= 0; --i) {
      for (int j = 0; j < 3; ++j) {
        rb(P + "decoder.up." + std::to_string(i) + ".block." + std::to_string(j) + ".", cur, ch * c.vae_mult[i]);
        cur = ch * c.vae_mult[i];
      }
      if (i > 0) {
        S(P + "decoder.up." + std::to_string(i) + ".upsample.conv.weight", {cur, cur, 3, 3});
        S(P + "decoder.up." + std::to_string(i) + ".upsample.conv.bias", {cur});
      }
    }
    S(P + "decoder.norm_out.weight", {ch}); S(P + "decoder.norm_out.bias", {ch});
    S(P + "decoder.conv_out.weight", {3, ch, 3, 3}); S(P + "decoder.conv_out.bias", {3});
  }
  // ---- CLIP
  auto clip = [&](const std::string& P, int64_t w, bool fused, int64_t proj) {
    S(P + "embeddings.token_embedding.weight", {c.vocab, w});
    S(P + "embeddings.position_embedding.weight", {c.positions, w});
    S(P + "final_layer_norm.weight", {w}); S(P + "final_layer_norm.bias", {w});
    if (proj > 0) S(P + "text_projection", {w, proj});
    for (int i = 0; i < c.clip_layers; ++i) {
      std::string b = P + "encoder.layers." + std::to_string(i) + ".";
      if (fused) {
        S(b + "self_attn.in_proj.weight", {3 * w, w}); S(b + "self_attn.in_proj.bias", {3 * w});
        S(b + "self_attn.out_proj.weight", {w, w}); S(b + "self_attn.out_proj.bias", {w});
      } else {
        for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
          S(b + "self_attn." + n + ".weight", {w, w}); S(b + "self_attn." + n + ".bias", {w});
        }
      }
      for (const char* n : {"layer_norm1", "layer_norm2"}) { S(b + n + ".weight", {w}); S(b + n + ".bias", {w}); }
      S(b + "mlp.fc1.weight", {w * 4, w}); S(b + "mlp.fc1.bias", {w * 4});
      S(b + "mlp.fc2.weight", {w, w * 4}); S(b + "mlp.fc2.bias", {w});
    }
  };
  if (c.family == "sd2") {
    clip("cond_stage_model.transformer.text_model.", c.ctx, c.fused_qkv, c.ctx);
  } else {
    clip("cond_stage_model.transformer.text_model.", c.ctx, false, 0);
    if (c.family == "sdxl") clip("cond_stage_model.1.transformer.text_model.", c.ctx2, c.fused_qkv, c.proj);
  }
  // ---- values
  std::map<std::string, sdn::Tensor> out;
  uint32_t k = 0;
  for (const auto& kv : shapes) {
    const std::string& name = kv.first;
    const std::vector<int64_t>& shape = kv.second;
    std::mt19937 rng(c.seed * 7919u + (k++) * 104729u);
    std::normal_distribution<float> nd(0.f, 1.f);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v((size_t)n);
    if (shape.size() == 1) {
      bool is_norm = name.find("norm") != std::string::npos || name.find("in_layers.0") != std::string::npos ||
                     name.find("out_layers.0") != std::string::npos || name.find("out.0.") != std::string::npos;
      bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
      for (auto& x : v) x = (is_norm && weight) ? 1.f + 0.05f * nd(rng) : 0.02f * nd(rng);
      out[name] = sdn::Tensor::from_vector(shape, v);
    } else {
      float scale = name.find("embedding") != std::string::npos ? 0.5f : 1.f / std::sqrt((float)(n / shape[0]));
      for (auto& x : v) x = nd(rng) * scale;
      // matrices stored as F16, like real checkpoints
      auto buf = std::shared_ptr<void>(new uint16_t[(size_t)n], [](void* p) { delete[] static_cast<uint16_t*>(p); });
      uint16_t* h = static_cast<uint16_t*>(buf.get());
      for (int64_t i = 0; i < n; ++i) h[i] = sdn::f32_to_f16(v[(size_t)i]);
      out[name] = sdn::Tensor::wrap(buf.get(), shape, sdn::DType::F16, buf);
    }
  }
  return out;
}

// A tiny merges text for the tokenizer: vocabulary = 512 byte symbols + these merges + BOS + EOS.
inline std::string tiny_merges() {
  return "#version: 0.2\nt h\nth e</w>\na n\nan d</w>\ne r\no n\nr e\ni n\n";
}

}  // namespace sdntest
