#include "formats/names.h"

#include <algorithm>

namespace sdn {

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  for (;;) {
    size_t e = s.find('.', b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& p, size_t from) {
  std::string s;
  for (size_t i = from; i < p.size(); ++i) {
    if (i > from) s += '.';
    s += p[i];
  }
  return s;
}

bool starts_with(const std::string& s, const char* p) { return s.compare(0, std::char_traits<char>::length(p), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Small non-negative integer (block indices); -1 if not one.
int small_int(const std::string& s) {
  if (s.empty() || s.size() > 4) return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

std::string resnet_inner_unet(const std::string& n) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
      {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
  for (auto& m : kMap)
    if (n == m.first) return m.second;
  return n;
}

// OpenCLIP text tower names (after the tower prefix) -> HF-style names under text_model.; "" = drop.
std::string openclip_to_hf(const std::vector<std::string>& p, size_t from) {
  std::string rest = join(p, from);
  if (rest == "token_embedding.weight") return "embeddings.token_embedding.weight";
  if (rest == "positional_embedding") return "embeddings.position_embedding.weight";
  if (rest == "text_projection") return "text_projection";
  if (rest == "logit_scale") return "";
  if (p.size() > from && p[from] == "ln_final") return "final_layer_norm." + join(p, from + 1);
  if (p.size() > from + 3 && p[from] == "transformer" && p[from + 1] == "resblocks" && small_int(p[from + 2]) >= 0) {
    std::string pre = "encoder.layers." + p[from + 2] + ".";
    std::string r = join(p, from + 3);
    if (starts_with(r, "ln_1.")) return pre + "layer_norm1." + r.substr(5);
    if (starts_with(r, "ln_2.")) return pre + "layer_norm2." + r.substr(5);
    if (r == "attn.in_proj_weight") return pre + "self_attn.in_proj.weight";
    if (r == "attn.in_proj_bias") return pre + "self_attn.in_proj.bias";
    if (starts_with(r, "attn.out_proj.")) return pre + "self_attn.out_proj." + r.substr(14);
    if (starts_with(r, "mlp.c_fc.")) return pre + "mlp.fc1." + r.substr(9);
    if (starts_with(r, "mlp.c_proj.")) return pre + "mlp.fc2." + r.substr(11);
    return pre + r;
  }
  return rest;
}

bool dropped(const std::string& n) {
  static const char* kDropExact[] = {"betas", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                     "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                                     "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "denoiser.sigmas",
                                     "model.betas", "model.alphas_cumprod_prev"};
  for (const char* d : kDropExact)
    if (n == d) return true;
  if (starts_with(n, "posterior_") || starts_with(n, "model.posterior_")) return true;
  if (starts_with(n, "model_ema.") || starts_with(n, "embedding_manager")) return true;
  if (ends_with(n, "position_ids") || ends_with(n, "logit_scale")) return true;
  return false;
}

}  // namespace

bool is_vae_attention_projection(const std::string& c) {
  if (!starts_with(c, "first_stage_model.")) return false;
  static const char* kNames[] = {"encoder.mid.attn_1.q.weight", "encoder.mid.attn_1.k.weight",
                                 "encoder.mid.attn_1.v.weight", "encoder.mid.attn_1.proj_out.weight",
                                 "decoder.mid.attn_1.q.weight", "decoder.mid.attn_1.k.weight",
                                 "decoder.mid.attn_1.v.weight", "decoder.mid.attn_1.proj_out.weight"};
  for (const char* k : kNames)
    if (c.compare(18, std::string::npos, k) == 0) return true;
  return false;
}

NameMapper::NameMapper(const std::vector<std::pair<std::string, std::string>>& names) {
  bool has_prefixed = false, has_bare_unet = false, has_bare_unet_diff = false, has_bare_vae = false,
       has_bare_text = false;
  int max_up = -1;
  for (const auto& cn : names) {
    const std::string& comp = cn.first;
    const std::string& n = cn.second;
    std::vector<std::string> p = split(n);
    // diffusers UNet up-blocks that have attentions (decides where the upsampler goes)
    size_t k = comp == "unet" ? 0 : (p.size() && (p[0] == "unet") ? 1 : 0);
    if ((comp == "unet" || comp.empty()) && p.size() > k + 3 && p[k] == "up_blocks" && p[k + 2] == "attentions") {
      int i = small_int(p[k + 1]);
      if (i >= 0) up_blocks_with_attn_.insert(i);
    }
    for (size_t j = 0; j + 2 < p.size(); ++j)
      if (p[j] == "decoder" && p[j + 1] == "up_blocks") max_up = std::max(max_up, small_int(p[j + 2]));
    if (!comp.empty()) continue;
    if (starts_with(n, "model.") || starts_with(n, "first_stage_model.") || starts_with(n, "cond_stage_model.") ||
        starts_with(n, "conditioner.") || starts_with(n, "unet.") || starts_with(n, "vae.") ||
        starts_with(n, "text_encoder") || starts_with(n, "diffusion_model."))
      has_prefixed = true;
    if (starts_with(n, "input_blocks.") || starts_with(n, "middle_block.") || starts_with(n, "output_blocks."))
      has_bare_unet = true;
    if (starts_with(n, "down_blocks.") || starts_with(n, "mid_block.") || starts_with(n, "up_blocks."))
      has_bare_unet_diff = true;
    if (starts_with(n, "encoder.") || starts_with(n, "decoder.")) has_bare_vae = true;
    if (starts_with(n, "text_model.")) has_bare_text = true;
  }
  if (max_up >= 0) vae_up_blocks_ = max_up + 1;
  // Bare names are only interpreted when nothing in the file carries a full prefix.
  if (!has_prefixed) {
    bare_unet_ = has_bare_unet;
    bare_unet_diffusers_ = has_bare_unet_diff && !has_bare_vae;
    bare_vae_ = has_bare_vae;
    bare_text_ = has_bare_text;
  }
}

std::string NameMapper::unet_diffusers(const std::vector<std::string>& p) const {
  const std::string M = "model.diffusion_model.";
  if (p.empty()) return "";
  auto rest = [&](size_t from) { return join(p, from); };
  const std::string& a = p[0];
  if (a == "time_embedding" && p.size() > 2) {
    if (p[1] == "linear_1") return M + "time_embed.0." + rest(2);
    if (p[1] == "linear_2") return M + "time_embed.2." + rest(2);
  }
  if (a == "add_embedding" && p.size() > 2) {
    if (p[1] == "linear_1") return M + "label_emb.0.0." + rest(2);
    if (p[1] == "linear_2") return M + "label_emb.0.2." + rest(2);
  }
  if (a == "conv_in" && p.size() > 1) return M + "input_blocks.0.0." + rest(1);
  if (a == "conv_norm_out" && p.size() > 1) return M + "out.0." + rest(1);
  if (a == "conv_out" && p.size() > 1) return M + "out.2." + rest(1);
  if (a == "down_blocks" && p.size() > 4) {
    int i = small_int(p[1]), j = small_int(p[3]);
    if (i >= 0 && j >= 0) {
      if (p[2] == "resnets")
        return M + "input_blocks." + std::to_string(3 * i + j + 1) + ".0." + resnet_inner_unet(p[4]) +
               (p.size() > 5 ? "." + rest(5) : "");
      if (p[2] == "attentions") return M + "input_blocks." + std::to_string(3 * i + j + 1) + ".1." + rest(4);
      if (p[2] == "downsamplers" && p[4] == "conv" && p.size() > 5)
        return M + "input_blocks." + std::to_string(3 * i + 3) + ".0.op." + rest(5);
    }
  }
  if (a == "mid_block" && p.size() > 3) {
    int j = small_int(p[2]);
    if (p[1] == "resnets" && (j == 0 || j == 1))
      return M + "middle_block." + (j == 0 ? "0." : "2.") + resnet_inner_unet(p[3]) + (p.size() > 4 ? "." + rest(4) : "");
    if (p[1] == "attentions" && j == 0) return M + "middle_block.1." + rest(3);
  }
  if (a == "up_blocks" && p.size() > 4) {
    int i = small_int(p[1]), j = small_int(p[3]);
    if (i >= 0 && j >= 0) {
      if (p[2] == "resnets")
        return M + "output_blocks." + std::to_string(3 * i + j) + ".0." + resnet_inner_unet(p[4]) +
               (p.size() > 5 ? "." + rest(5) : "");
      if (p[2] == "attentions") return M + "output_blocks." + std::to_string(3 * i + j) + ".1." + rest(4);
      if (p[2] == "upsamplers" && p[4] == "conv" && p.size() > 5)
        return M + "output_blocks." + std::to_string(3 * i + 2) + (up_blocks_with_attn_.count(i) ? ".2" : ".1") +
               ".conv." + rest(5);
    }
  }
  return M + rest(0);  // already LDM-style (or unknown): keep under the UNet prefix
}

std::string NameMapper::vae_inner(const std::vector<std::string>& p) const {
  const std::string F = "first_stage_model.";
  if (p.empty()) return "";
  auto rest = [&](size_t from) { return join(p, from); };
  auto resnet = [](const std::string& s) { return s == "conv_shortcut" ? std::string("nin_shortcut") : s; };
  const std::string& side = p[0];
  if ((side == "encoder" || side == "decoder") && p.size() > 2) {
    if (p[1] == "conv_norm_out") return F + side + ".norm_out." + rest(2);
    if (side == "encoder" && p[1] == "down_blocks" && p.size() > 5) {
      int i = small_int(p[2]), j = small_int(p[4]);
      if (i >= 0 && j >= 0 && p[3] == "resnets")
        return F + "encoder.down." + p[2] + ".block." + p[4] + "." + resnet(p[5]) + (p.size() > 6 ? "." + rest(6) : "");
      if (i >= 0 && p[3] == "downsamplers" && p[5] == "conv" && p.size() > 6)
        return F + "encoder.down." + p[2] + ".downsample.conv." + rest(6);
    }
    if (side == "decoder" && p[1] == "up_blocks" && p.size() > 5) {
      int i = small_int(p[2]), j = small_int(p[4]);
      if (i >= 0 && i < vae_up_blocks_) {
        std::string lvl = std::to_string(vae_up_blocks_ - 1 - i);
        if (j >= 0 && p[3] == "resnets")
          return F + "decoder.up." + lvl + ".block." + p[4] + "." + resnet(p[5]) + (p.size() > 6 ? "." + rest(6) : "");
        if (p[3] == "upsamplers" && p[5] == "conv" && p.size() > 6) return F + "decoder.up." + lvl + ".upsample.conv." + rest(6);
      }
    }
    if (p[1] == "mid_block" && p.size() > 4) {
      int j = small_int(p[3]);
      if (p[2] == "resnets" && (j == 0 || j == 1))
        return F + side + ".mid.block_" + (j == 0 ? "1." : "2.") + resnet(p[4]) + (p.size() > 5 ? "." + rest(5) : "");
      if (p[2] == "attentions" && j == 0) {
        static const std::pair<const char*, const char*> kAttn[] = {
            {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"},   {"to_v", "v"},
            {"query", "q"},         {"key", "k"},  {"value", "v"}, {"proj_attn", "proj_out"}};
        std::string r = rest(4);
        if (starts_with(r, "to_out.0.")) return F + side + ".mid.attn_1.proj_out." + r.substr(9);
        for (auto& m : kAttn)
          if (p[4] == m.first) return F + side + ".mid.attn_1." + m.second + (p.size() > 5 ? "." + rest(5) : "");
      }
    }
  }
  return F + rest(0);
}

std::string NameMapper::map(const std::string& component, const std::string& name) const {
  std::string full = component.empty() ? name : component + "." + name;
  if (dropped(full) || dropped(name)) return "";
  std::string c = map_full(full);
  // HF CLIPTextModelWithProjection (diffusers text_encoder_2) keeps its projection beside text_model.: move it
  // under text_model. like the OpenCLIP one (the ".weight" suffix keeps telling the Linear layout P^T apart)
  static const std::string kHfProj = "cond_stage_model.1.transformer.text_projection.weight";
  if (c == kHfProj) return "cond_stage_model.1.transformer.text_model.text_projection.weight";
  return c;
}

std::string NameMapper::map_full(const std::string& n) const {
  std::vector<std::string> p = split(n);
  if (starts_with(n, "model.diffusion_model.") || starts_with(n, "first_stage_model.")) {
    // Already LDM; a diffusers-style VAE under first_stage_model. is still normalised.
    if (starts_with(n, "first_stage_model.")) return vae_inner(std::vector<std::string>(p.begin() + 1, p.end()));
    return n;
  }
  if (starts_with(n, "diffusion_model.")) return "model." + n;
  if (starts_with(n, "unet.")) return unet_diffusers(std::vector<std::string>(p.begin() + 1, p.end()));
  if (starts_with(n, "vae.")) return vae_inner(std::vector<std::string>(p.begin() + 1, p.end()));
  if (starts_with(n, "cond_stage_model.transformer.")) {
    std::string r = n.substr(29);
    if (starts_with(r, "embeddings.") || starts_with(r, "encoder.") || starts_with(r, "final_layer_norm."))
      return "cond_stage_model.transformer.text_model." + r;  // older transformers layout (A1111 renames these)
    return n;
  }
  if (starts_with(n, "cond_stage_model.model.")) return "cond_stage_model.transformer.text_model." + openclip_to_hf(p, 2);
  if (starts_with(n, "conditioner.embedders.0.")) return map_full("cond_stage_model." + n.substr(24));
  if (starts_with(n, "conditioner.embedders.1.model."))
    return "cond_stage_model.1.transformer.text_model." + openclip_to_hf(p, 4);
  if (starts_with(n, "conditioner.embedders.1.")) return "cond_stage_model.1." + n.substr(24);
  if (starts_with(n, "text_encoder_2.")) return "cond_stage_model.1.transformer." + n.substr(15);
  if (starts_with(n, "text_encoder.2.")) return "cond_stage_model.1.transformer." + n.substr(15);
  if (starts_with(n, "text_encoder.")) return map_full("cond_stage_model.transformer." + n.substr(13));
  if (starts_with(n, "te2.")) return "cond_stage_model.1.transformer." + n.substr(4);
  if (starts_with(n, "te.")) return map_full("cond_stage_model.transformer." + n.substr(3));
  if (starts_with(n, "clip_l.")) return map_full("cond_stage_model.transformer." + n.substr(7));
  if (starts_with(n, "clip_g.")) return "cond_stage_model.1.transformer." + n.substr(7);
  // Files holding one component with bare names.
  if (bare_unet_ && (starts_with(n, "input_blocks.") || starts_with(n, "middle_block.") ||
                     starts_with(n, "output_blocks.") || starts_with(n, "time_embed.") || starts_with(n, "out.") ||
                     starts_with(n, "label_emb.")))
    return "model.diffusion_model." + n;
  if (bare_unet_diffusers_ && !bare_unet_) return unet_diffusers(p);
  if (bare_vae_ && (starts_with(n, "encoder.") || starts_with(n, "decoder.") || starts_with(n, "quant_conv.") ||
                    starts_with(n, "post_quant_conv.")))
    return vae_inner(p);
  if (bare_text_ && starts_with(n, "text_model.")) return "cond_stage_model.transformer." + n;
  return n;
}

}  // namespace sdn
