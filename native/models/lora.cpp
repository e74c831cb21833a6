#include "models/lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/names.h"
#include "formats/weight_file.h"
#include "sdn/error.h"

namespace sdn {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
std::string replace_all(std::string s, const std::string& a, const std::string& b) {
  for (size_t i = s.find(a); i != std::string::npos; i = s.find(a, i + b.size())) s.replace(i, a.size(), b);
  return s;
}
std::string file_name(const std::string& p) {
  size_t s = p.find_last_of("/\\");
  return s == std::string::npos ? p : p.substr(s + 1);
}

// Multi-word module names of the diffusers / LDM / HF-CLIP layouts, longest first where they share a start.
const std::vector<std::vector<std::string>>& compounds() {
  static const std::vector<std::vector<std::string>> k = {
      {"conv", "norm", "out"}, {"final", "layer", "norm"}, {"time", "emb", "proj"},
      {"down", "blocks"},      {"mid", "block"},           {"up", "blocks"},         {"transformer", "blocks"},
      {"input", "blocks"},     {"middle", "block"},        {"output", "blocks"},     {"in", "layers"},
      {"out", "layers"},       {"emb", "layers"},          {"skip", "connection"},   {"time", "embedding"},
      {"time", "embed"},       {"label", "emb"},           {"add", "embedding"},     {"conv", "shortcut"},
      {"conv", "in"},          {"conv", "out"},            {"text", "model"},        {"self", "attn"},
      {"q", "proj"},           {"k", "proj"},              {"v", "proj"},            {"out", "proj"},
      {"to", "q"},             {"to", "k"},                {"to", "v"},              {"to", "out"},
      {"proj", "in"},          {"proj", "out"},            {"layer", "norm1"},       {"layer", "norm2"},
      {"token", "embedding"},  {"position", "embedding"},  {"linear", "1"},          {"linear", "2"},
      {"in", "proj"}};
  return k;
}

// Family guess from the pairs (for messages): SDXL from its naming or 2048-wide cross-attention, SD 2.x from
// 1024-wide text features.
void guess_family(const std::vector<LoraFile::Pair>& pairs, std::string& family, std::string& why) {
  for (const auto& p : pairs) {
    if (starts_with(p.module, "lora_te1_") || starts_with(p.module, "lora_te2_") ||
        starts_with(p.target, "cond_stage_model.1.")) {
      family = "sdxl";
      why = "its second text encoder (" + p.module + ")";
      return;
    }
  }
  for (const auto& p : pairs) {
    if (p.target.find("attn2.to_k.weight") == std::string::npos || !p.down || p.down->ndim < 2) continue;
    int64_t ctx = p.down->shape[1];
    if (ctx == 2048) family = "sdxl";
    else if (ctx == 1024) family = "sd2";
    else if (ctx == 768) family = "sd1";
    if (!family.empty()) {
      why = "its " + std::to_string(ctx) + "-wide cross-attention (" + p.module + ")";
      return;
    }
  }
  for (const auto& p : pairs) {
    if (p.target.find("self_attn.q_proj.weight") == std::string::npos || !p.down || p.down->ndim < 2) continue;
    int64_t w = p.down->shape[1];
    if (w == 1024) family = "sd2";
    else if (w == 768) family = "sd1";
    if (!family.empty()) {
      why = "its " + std::to_string(w) + "-wide text encoder (" + p.module + ")";
      return;
    }
  }
}

const char* family_label(const std::string& f) {
  if (f == "sd1") return "SD 1.x";
  if (f == "sd2") return "SD 2.x";
  if (f == "sdxl") return "SDXL";
  return "an unknown family";
}

}  // namespace

std::string kohya_dotted(const std::string& module) {
  std::vector<std::string> tok;
  size_t b = 0;
  for (;;) {
    size_t e = module.find('_', b);
    tok.push_back(module.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  std::string out;
  for (size_t i = 0; i < tok.size();) {
    size_t take = 1;
    for (const auto& c : compounds()) {
      if (c.size() <= take || i + c.size() > tok.size()) continue;
      bool ok = true;
      for (size_t j = 0; j < c.size() && ok; ++j) ok = tok[i + j] == c[j];
      if (ok) take = c.size();
    }
    if (!out.empty()) out += '.';
    for (size_t j = 0; j < take; ++j) out += (j ? "_" : "") + tok[i + j];
    i += take;
  }
  return out;
}

std::shared_ptr<LoraFile> LoraFile::open(const std::string& path) {
  auto f = std::shared_ptr<LoraFile>(new LoraFile());
  f->path_ = path;
  f->file_ = WeightFile::open(path);
  const WeightFile& wf = *f->file_;
  static const NameMapper kUnetMapper({});
  struct Suffix {
    const char* down;
    const char* up;
  };
  static const Suffix kSuffixes[] = {{".lora_down.weight", ".lora_up.weight"},
                                     {".lora_A.weight", ".lora_B.weight"},
                                     {".lora.down.weight", ".lora.up.weight"},
                                     {"_lora.down.weight", "_lora.up.weight"}};
  std::vector<bool> used(wf.names().size(), false);
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < wf.names().size(); ++i) index[wf.names()[i]] = i;
  for (size_t i = 0; i < wf.names().size(); ++i) {
    const std::string& n = wf.names()[i];
    for (const Suffix& s : kSuffixes) {
      if (!ends_with(n, s.down)) continue;
      std::string module = n.substr(0, n.size() - std::strlen(s.down));
      auto up = index.find(module + s.up);
      if (up == index.end()) break;
      Pair p;
      p.module = module;
      p.down = &wf.get(n);
      p.up = &wf.get(up->first);
      used[i] = used[up->second] = true;
      auto al = index.find(module + ".alpha");
      if (al != index.end()) {
        const Tensor& a = wf.get(al->first);
        if (a.numel() == 1) {
          Tensor af = a.to_f32();
          p.alpha = af.f32()[0];
          if (!std::isfinite(p.alpha)) p.alpha = 0.f;
        }
        used[al->second] = true;
      }
      // the module's weight in the engine's (LDM) naming
      std::string m = module;
      if (std::string(s.down) == "_lora.down.weight") {
        // attention processors: "...attn1.processor.to_q" -> "...attn1.to_q", to_out -> to_out.0
        m = replace_all(m, ".processor.", ".");
        if (ends_with(m, ".to_out")) m += ".0";
      }
      std::string target;
      if (starts_with(m, "lora_unet_")) {
        std::string d = kohya_dotted(m.substr(10));
        if (starts_with(d, "input_blocks.") || starts_with(d, "middle_block.") || starts_with(d, "output_blocks.") ||
            starts_with(d, "time_embed.") || starts_with(d, "label_emb.") || starts_with(d, "out."))
          target = "model.diffusion_model." + d + ".weight";
        else
          target = kUnetMapper.map("", "unet." + d + ".weight");
      } else if (starts_with(m, "lora_te_") || starts_with(m, "lora_te1_")) {
        target = "cond_stage_model.transformer." + kohya_dotted(m.substr(m[7] == '_' ? 8 : 9)) + ".weight";
      } else if (starts_with(m, "lora_te2_")) {
        target = "cond_stage_model.1.transformer." + kohya_dotted(m.substr(9)) + ".weight";
      } else if (starts_with(m, "model.diffusion_model.") || starts_with(m, "cond_stage_model.")) {
        target = m + ".weight";
      }
      if (ends_with(target, ".to_out.weight")) target = target.substr(0, target.size() - 7) + ".0.weight";
      for (int k = 0; k < 3; ++k) {
        static const char* kQkv[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"};
        if (ends_with(target, kQkv[k])) {
          p.alt = target.substr(0, target.size() - std::strlen(kQkv[k])) + "self_attn.in_proj.weight";
          p.slice = k;
        }
      }
      p.target = target;
      f->pairs_.push_back(p);
      break;
    }
  }
  for (size_t i = 0; i < wf.names().size(); ++i) {
    if (used[i]) continue;
    const std::string& n = wf.names()[i];
    const char* why = "not a LoRA up/down pair";
    if (n.find("hada_") != std::string::npos) why = "LyCORIS LoHa (not supported)";
    else if (n.find("lokr_") != std::string::npos) why = "LyCORIS LoKr (not supported)";
    else if (n.find("lora_mid") != std::string::npos) why = "LyCORIS Tucker mid tensor (not supported)";
    else if (n.find("dora_scale") != std::string::npos || n.find("magnitude") != std::string::npos)
      why = "DoRA magnitude (not supported)";
    else if (ends_with(n, ".diff") || ends_with(n, ".diff_b")) why = "full weight difference (not supported)";
    else if (ends_with(n, ".alpha")) why = "alpha without an up/down pair";
    f->unsupported_.push_back(n + ": " + why);
  }
  if (f->pairs_.empty())
    throw_error(ErrorCode::InvalidArgument,
                path + ": no LoRA tensors found (expected kohya lora_down/lora_up, PEFT lora_A/lora_B or diffusers "
                       "lora.down/lora.up pairs" +
                    (f->unsupported_.empty() ? std::string(")") : "; first tensor: " + f->unsupported_.front() + ")") +
                    ": is this a LoRA file?");
  guess_family(f->pairs_, f->family_, f->family_why_);
  return f;
}

LoraMatch LoraFile::match(const WeightStore& store, float weight, const std::string& model_family) const {
  LoraMatch r;
  r.path = path_;
  r.weight = weight;
  r.pairs = (int64_t)pairs_.size();
  r.family = family_;
  r.unsupported = unsupported_;
  const std::string what = file_name(path_);
  if (!family_.empty() && !model_family.empty() && family_ != model_family)
    throw_error(ErrorCode::InvalidArgument,
                path_ + ": this LoRA is for " + family_label(family_) + " (from " + family_why_ +
                    ") but the model is " + family_label(model_family) + ": use a LoRA made for " +
                    family_label(model_family) + " models (remove <lora:" + what + "> from the prompt or the entry "
                    "from `loras`)");
  std::shared_ptr<const void> keep = shared_from_this();
  for (const Pair& p : pairs_) {
    std::string target = p.target;
    int64_t off = 0;
    if (!target.empty() && !store.has(target) && !p.alt.empty() && store.has(p.alt)) {
      target = p.alt;
      off = p.slice * p.up->shape[0];
    }
    if (target.empty() || !store.has(target)) {
      // upsampler conv position depends on whether the block has attention
      std::string alt;
      size_t c = target.find(".1.conv.weight");
      if (c != std::string::npos) alt = target.substr(0, c) + ".2.conv.weight";
      if (!alt.empty() && store.has(alt)) target = alt;
      else {
        r.unmatched.push_back(p.module);
        continue;
      }
    }
    const Tensor& w = store.raw(target);
    const int64_t rows = w.shape[0], K = w.numel() / (rows ? rows : 1);
    const int64_t R = p.up->shape[0], rank = p.up->numel() / (R ? R : 1);
    if (w.ndim < 2 || p.down->shape[0] != rank || p.down->numel() / (rank ? rank : 1) != K || off + R > rows)
      throw_error(ErrorCode::InvalidArgument,
                  path_ + ": LoRA tensor " + p.module + " (up " + p.up->shape_str() + ", down " +
                      p.down->shape_str() + ") does not fit the model's " + target + " " + w.shape_str() +
                      ": the LoRA was made for another model (this one is " + family_label(model_family) + ")");
    WeightDelta d;
    d.up = *p.up;
    d.down = *p.down;
    d.scale = weight * (p.alpha > 0.f ? p.alpha / (float)rank : 1.f);
    d.row_offset = off;
    d.keep = keep;
    r.deltas[target].push_back(d);
    ++r.matched;
  }
  if (r.matched == 0)
    throw_error(ErrorCode::InvalidArgument,
                path_ + ": none of this LoRA's " + std::to_string(r.pairs) + " layers exist in the model (first: " +
                    pairs_.front().module + (family_.empty() ? "" : std::string("; it looks like a LoRA for ") +
                                                                        family_label(family_) + ", from " + family_why_) +
                    "): use a LoRA made for " + family_label(model_family) + " models");
  return r;
}

std::map<std::string, std::vector<WeightDelta>> merge_matches(const std::vector<LoraMatch>& matches) {
  std::map<std::string, std::vector<WeightDelta>> out;
  for (const LoraMatch& m : matches)
    for (const auto& kv : m.deltas)
      for (const WeightDelta& d : kv.second) out[kv.first].push_back(d);
  return out;
}

}  // namespace sdn
