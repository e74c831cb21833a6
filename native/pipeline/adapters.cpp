#include "pipeline/adapters.h"

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "formats/files.h"
#include "formats/weight_file.h"
#include "sdn/error.h"

namespace sdn {

namespace {

const char* family_label(const std::string& f) {
  if (f == "sd1") return "SD 1.x";
  if (f == "sd2") return "SD 2.x";
  if (f == "sdxl") return "SDXL";
  return "an unknown family";
}

std::string lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

const char* kLoraExts[] = {".safetensors", ".ckpt", ".pt", ".bin"};

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) out.push_back(e->d_name);
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<LoraSpec> extract_lora_tags(std::string& prompt, const std::string& lora_dir) {
  std::vector<LoraSpec> out;
  std::string rest;
  size_t i = 0;
  while (i < prompt.size()) {
    size_t b = prompt.find("<lora:", i);
    if (b == std::string::npos) break;
    size_t e = prompt.find('>', b);
    if (e == std::string::npos) break;
    rest += prompt.substr(i, b - i);
    std::string body = prompt.substr(b + 6, e - b - 6);
    i = e + 1;
    std::string name = body;
    float weight = 1.0f;
    size_t c = body.find(':');
    if (c != std::string::npos) {
      name = body.substr(0, c);
      std::string w = body.substr(c + 1);
      size_t c2 = w.find(':');  // A1111's te:unet multipliers: the first one is used for both
      if (c2 != std::string::npos) w = w.substr(0, c2);
      char* end = nullptr;
      double v = std::strtod(w.c_str(), &end);
      while (end && *end == ' ') ++end;
      if (w.empty() || !end || *end || !std::isfinite(v) || std::fabs(v) > 100)
        throw_error(ErrorCode::InvalidArgument, "<lora:" + body + ">: the weight '" + w +
                                                    "' is not a number in [-100, 100] (write <lora:NAME:0.8>)");
      weight = (float)v;
    }
    while (!name.empty() && name.back() == ' ') name.pop_back();
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    if (name.empty() || name.find("..") != std::string::npos || name[0] == '/')
      throw_error(ErrorCode::InvalidArgument, "<lora:" + body + ">: not a LoRA name (a file name in the LoRA folder, "
                                                                "without extension)");
    if (lora_dir.empty())
      throw_error(ErrorCode::InvalidArgument, "the prompt uses <lora:" + name +
                                                  "> but no LoRA folder was given: set loraDir (CLI --lora-model-dir)"
                                                  " to the folder holding " + name + ".safetensors");
    std::string found;
    for (const char* ext : kLoraExts) {
      std::string p = lora_dir + "/" + name + ext;
      if (is_file(p)) {
        found = p;
        break;
      }
    }
    if (found.empty()) {
      // file names are often typed in another case
      for (const std::string& f : list_dir(lora_dir))
        for (const char* ext : kLoraExts)
          if (lower(f) == lower(name + ext)) found = lora_dir + "/" + f;
    }
    if (found.empty())
      throw_error(ErrorCode::NotFound, "LoRA '" + name + "' (from <lora:" + body + "> in the prompt) is not in " +
                                           lora_dir + " (looked for " + name + ".safetensors, .ckpt, .pt, .bin): "
                                           "check the name or loraDir (CLI --lora-model-dir)");
    LoraSpec s;
    s.path = found;
    s.weight = weight;
    out.push_back(s);
  }
  rest += prompt.substr(std::min(i, prompt.size()));
  prompt = rest;
  return out;
}

void LoraState::apply(WeightStore& store, WeightStore* te_store, const std::vector<LoraSpec>& loras,
                      const std::string& family, std::vector<std::string>& warnings) {
  if (te_store == &store) te_store = nullptr;
  std::vector<std::pair<std::string, float>> want;
  for (const LoraSpec& l : loras) want.push_back({l.path, l.weight});
  if (want == current_ && !want.empty()) {
    // same set as last time: nothing to re-merge
    warnings.insert(warnings.end(), current_warnings_.begin(), current_warnings_.end());
    last_ = DeltaUpdate();
    last_.weights_adapted = (int64_t)store.deltas().size();
    last_.bytes_before = store.merged_bytes();
    return;
  }
  std::map<std::string, std::shared_ptr<LoraFile>> keep;
  std::vector<LoraMatch> matches;
  std::vector<std::string> notes;
  for (const LoraSpec& l : loras) {
    std::shared_ptr<LoraFile> f;
    auto it = open_.find(l.path);
    if (it != open_.end()) f = it->second;
    else if (keep.count(l.path)) f = keep[l.path];
    else f = LoraFile::open(l.path);
    keep[l.path] = f;
    matches.push_back(f->match(store, l.weight, family));
    const LoraMatch& m = matches.back();
    if (!m.unmatched.empty()) {
      std::string s = l.path + ": " + std::to_string(m.unmatched.size()) + " of " + std::to_string(m.pairs) +
                      " LoRA layers match no weight of this model and were not applied:";
      for (size_t k = 0; k < m.unmatched.size() && k < 5; ++k) s += " " + m.unmatched[k];
      if (m.unmatched.size() > 5) s += " ...";
      notes.push_back(s);
    }
    if (!m.unsupported.empty()) {
      std::string s = l.path + ": " + std::to_string(m.unsupported.size()) + " tensors were not applied:";
      for (size_t k = 0; k < m.unsupported.size() && k < 5; ++k) s += " " + m.unsupported[k] + ";";
      if (m.unsupported.size() > 5) s += " ...";
      notes.push_back(s);
    }
  }
  auto all = merge_matches(matches);
  if (te_store) {
    // text-encoder deltas to the store the text encoder reads from; validated there before anything changes
    std::map<std::string, std::vector<WeightDelta>> te;
    for (auto it = all.begin(); it != all.end();)
      if (it->first.compare(0, 17, "cond_stage_model.") == 0) {
        te.insert(*it);
        it = all.erase(it);
      } else {
        ++it;
      }
    te_store->set_deltas(std::move(te));
  }
  last_ = store.set_deltas(std::move(all));
  open_ = std::move(keep);  // files no longer used are closed (their deltas are gone from the store)
  current_ = want;
  current_warnings_ = notes;
  warnings.insert(warnings.end(), notes.begin(), notes.end());
}

LoadedControlNet::~LoadedControlNet() {
  model.reset();
  store.reset();
  file.reset();
}

namespace {
// A ControlNet is one weights file; a diffusers ControlNet folder (config.json + diffusion_pytorch_model[.fp16].*, as
// downloaded from the Hub) names its weights file.
std::string controlnet_weights(const std::string& path) {
  if (!is_dir(path)) return path;
  for (const char* n : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                        "diffusion_pytorch_model.safetensors.index.json",
                        "diffusion_pytorch_model.fp16.safetensors.index.json", "diffusion_pytorch_model.bin",
                        "diffusion_pytorch_model.fp16.bin"})
    if (is_file(path + "/" + n)) return path + "/" + n;
  throw_error(ErrorCode::NotFound, path + ": a folder without ControlNet weights (diffusion_pytorch_model.safetensors "
                                          "or .fp16.safetensors): give a ControlNet file or its diffusers folder as "
                                          "controlNet.model (CLI --control-net)");
}
}  // namespace

std::unique_ptr<LoadedControlNet> load_controlnet(const std::string& path, Backend& backend, const UNetModel& unet,
                                                  const std::string& model_family, int heads, int head_dim) {
  auto c = std::make_unique<LoadedControlNet>();
  c->path = path;
  c->file = WeightFile::open(controlnet_weights(path));
  c->store = std::make_unique<WeightStore>(c->file.get(), backend);
  c->model = std::make_unique<ControlNetModel>(*c->store, path, heads, head_dim);
  const ControlNetModel& m = *c->model;
  const std::string use = "use a ControlNet made for " + std::string(family_label(model_family)) +
                          " (controlNet.model / --control-net)";
  auto desc = [](int ctx, int ch, int adm) {
    return "cross-attention width " + std::to_string(ctx) + ", " + std::to_string(ch) + " channels" +
           (adm ? ", vector conditioning " + std::to_string(adm) + " wide" : ", no vector conditioning");
  };
  const bool family_differs = (m.adm_channels() > 0) != (unet.adm_channels() > 0);
  if (family_differs || m.context_dim() != unet.context_dim() || m.model_channels() != unet.model_channels() ||
      m.adm_channels() != unet.adm_channels()) {
    // the family by structure; a same-family file of other widths is named as such
    const std::string fam = family_label(m.family());
    const bool same = m.family() == model_family;
    throw_error(ErrorCode::InvalidArgument,
                path + ": this ControlNet is for " + (same ? "a different " + fam + " model" : fam) + " (" +
                    desc(m.context_dim(), m.model_channels(), m.adm_channels()) + ") but the model is " +
                    family_label(model_family) + " (" +
                    desc(unet.context_dim(), unet.model_channels(), unet.adm_channels()) + "): " + use);
  }
  if (m.outputs() != unet.input_blocks() + 1)
    throw_error(ErrorCode::InvalidArgument, path + ": this ControlNet has " + std::to_string(m.outputs()) +
                                                " outputs but the model's U-Net takes " +
                                                std::to_string(unet.input_blocks() + 1) +
                                                " (another block layout): " + use);
  for (int i = 0; i < m.outputs(); ++i)
    if (m.block_channels(i) != unet.block_channels(i))
      throw_error(ErrorCode::InvalidArgument,
                  path + ": this ControlNet's output " + std::to_string(i) + " has " + std::to_string(m.block_channels(i)) +
                      " channels where the U-Net has " + std::to_string(unet.block_channels(i)) +
                      " (another block layout): " + use);
  return c;
}

namespace {

// What a text-encoder width usually belongs to (for messages).
std::string width_label(int64_t w) {
  if (w == 768) return "768 wide: CLIP ViT-L, SD 1.x";
  if (w == 1024) return "1024 wide: OpenCLIP ViT-H, SD 2.x";
  if (w == 1280) return "1280 wide: OpenCLIP ViT-bigG, SDXL clip_g";
  return std::to_string(w) + " wide";
}

std::string model_label(const std::string& family, int64_t width, int64_t width2) {
  if (family == "sdxl")
    return "SDXL, whose text encoders are " + std::to_string(width) + " (CLIP-L) and " + std::to_string(width2) +
           " (bigG) wide";
  return std::string(family_label(family)) + ", whose text encoder is " + std::to_string(width) + " wide";
}

// An owned host F32 [n, D] copy of t (the file closes after reading); checks the shape.
Tensor embedding_rows(const std::string& path, const std::string& what, const Tensor& t, int64_t width,
                      const std::string& family, int64_t width2, const std::string& advice) {
  Tensor v = t.to_f32();
  if (v.ndim == 1) v = v.reshape({1, v.shape[0]});
  if (v.ndim != 2 || v.shape[0] < 1 || v.shape[0] > 75)
    throw_error(ErrorCode::InvalidFile, path + ": embedding tensor " + what + " " + v.shape_str() +
                                            " is not [vectors (1..75), width]");
  if (v.shape[1] != width)
    throw_error(ErrorCode::InvalidArgument,
                path + ": embedding " + what + " " + v.shape_str() + " (" + width_label(v.shape[1]) +
                    ") does not fit the model (" + model_label(family, width, width2) + "): " + advice);
  if (!v.is_contiguous()) v = v.contiguous();
  auto buf = std::shared_ptr<void>(std::malloc((size_t)v.numel() * sizeof(float)), std::free);
  if (!buf) throw_error(ErrorCode::OutOfMemory, path + ": no memory for the embedding");
  std::copy(v.f32(), v.f32() + v.numel(), static_cast<float*>(buf.get()));
  return Tensor::wrap(buf.get(), v.sizes(), DType::F32, buf);
}

std::string stem_of(const std::string& path) {
  size_t s = path.find_last_of("/\\");
  std::string f = s == std::string::npos ? path : path.substr(s + 1);
  size_t d = f.find_last_of('.');
  return lower(d == std::string::npos ? f : f.substr(0, d));
}

}  // namespace

Embedding read_embedding(const std::string& path, const std::string& model_family, int64_t width, int64_t width2) {
  auto f = WeightFile::open(path);
  const Tensor *single = nullptr, *clip_l = nullptr, *clip_g = nullptr, *clip_h = nullptr;
  std::string single_name;
  std::vector<std::pair<std::string, const Tensor*>> two_d;
  for (const std::string& n : f->names()) {
    const Tensor& x = f->get(n);
    if (!single && (n == "emb_params" || n.compare(0, 16, "string_to_param.") == 0)) single = &x, single_name = n;
    else if (n == "clip_l") clip_l = &x;
    else if (n == "clip_g") clip_g = &x;
    else if (n == "clip_h") clip_h = &x;
    else if (x.ndim == 2) two_d.push_back({n, &x});
  }
  const bool xl_file = clip_l || clip_g;
  if (!single && !xl_file && !clip_h && two_d.size() == 1) single = two_d[0].second, single_name = two_d[0].first;
  const std::string name = stem_of(path);
  const std::string advice = "use an embedding made for " + std::string(family_label(model_family)) +
                             (model_family == "sdxl" ? " (clip_l and clip_g tensors)" : "") + ", or remove '" + name +
                             "' from the prompt (the files of embeddingDir / --embd-dir are used by name)";
  Embedding e;
  e.name = name;
  e.path = path;
  if (!single && !xl_file && !clip_h)
    throw_error(ErrorCode::InvalidFile, path + ": not a textual-inversion embedding (no emb_params, string_to_param.*, "
                                               "clip_l/clip_g or single 2-D tensor)");
  if (model_family == "sdxl") {
    if (!xl_file) {
      const Tensor* t = single ? single : clip_h;
      const int64_t w = t->ndim >= 1 ? t->shape[t->ndim - 1] : 0;
      throw_error(ErrorCode::InvalidArgument,
                  path + ": this embedding has one " + width_label(w) + " table (" + (single ? single_name : "clip_h") +
                      ") but the model is SDXL, which needs an embedding with clip_l (" + std::to_string(width) +
                      " wide) and clip_g (" + std::to_string(width2) + " wide) tensors: " + advice);
    }
    if (!clip_l || !clip_g)
      throw_error(ErrorCode::InvalidArgument, path + ": this SDXL embedding has " + (clip_l ? "clip_l" : "clip_g") +
                                                  " but no " + (clip_l ? "clip_g" : "clip_l") +
                                                  " tensor; SDXL needs both (one per text encoder): " + advice);
    e.vectors = embedding_rows(path, "clip_l", *clip_l, width, model_family, width2, advice);
    e.vectors2 = embedding_rows(path, "clip_g", *clip_g, width2, model_family, width2, advice);
    if (e.vectors.shape[0] != e.vectors2.shape[0])
      throw_error(ErrorCode::InvalidFile, path + ": clip_l has " + std::to_string(e.vectors.shape[0]) +
                                              " vectors but clip_g " + std::to_string(e.vectors2.shape[0]) +
                                              " (they must have the same count)");
    return e;
  }
  // SD 1.x / 2.x: one table. SD 1.x's encoder is CLIP ViT-L, the same as an SDXL file's clip_l (ComfyUI's rule);
  // SD 2.x takes ComfyUI's clip_h key.
  const Tensor* t = single;
  std::string what = single_name;
  if (!t && model_family == "sd2" && clip_h) t = clip_h, what = "clip_h";
  if (!t && model_family != "sd2" && clip_l) t = clip_l, what = "clip_l";
  if (!t) {
    if (xl_file)
      throw_error(ErrorCode::InvalidArgument, path + ": this is an SDXL embedding (clip_l/clip_g tensors) but the model is " +
                                                  model_label(model_family, width, 0) + ": " + advice);
    throw_error(ErrorCode::InvalidArgument, path + ": this embedding has only a clip_h table (OpenCLIP ViT-H, SD 2.x) "
                                                   "but the model is " + model_label(model_family, width, 0) + ": " + advice);
  }
  e.vectors = embedding_rows(path, what, *t, width, model_family, 0, advice);
  return e;
}

ExtraTokens embedding_tokens(const std::vector<Embedding>& embs, const ClipTokenizer& tokenizer, int vocab) {
  ExtraTokens x;
  if (embs.empty()) return x;
  int64_t rows = 0;
  const int64_t D = embs[0].vectors.shape[1];
  const int64_t D2 = embs[0].vectors2.defined() ? embs[0].vectors2.shape[1] : 0;
  for (const Embedding& e : embs) rows += e.vectors.shape[0];
  auto table = [&](int64_t width) {
    auto buf = std::shared_ptr<void>(std::malloc((size_t)rows * (size_t)width * sizeof(float)), std::free);
    if (!buf) throw_error(ErrorCode::OutOfMemory, "no memory for the textual-inversion vectors");
    return Tensor::wrap(buf.get(), {rows, width}, DType::F32, buf);
  };
  x.extra = table(D);
  if (D2 > 0) x.extra2 = table(D2);
  int64_t at = 0;
  for (const Embedding& e : embs) {
    const int64_t n = e.vectors.shape[0];
    if (e.vectors.shape[1] != D || (D2 > 0) != e.vectors2.defined() || (D2 > 0 && (e.vectors2.shape[1] != D2 ||
                                                                                  e.vectors2.shape[0] != n)))
      throw_error(ErrorCode::Internal, "embeddings of different widths in one prompt");
    TokenReplacement r;
    r.match = tokenizer.encode(e.name);
    for (int64_t k = 0; k < n; ++k) r.ids.push_back(vocab + (int)(at + k));
    std::copy(e.vectors.f32(), e.vectors.f32() + e.vectors.numel(), x.extra.f32() + at * D);
    if (D2 > 0) std::copy(e.vectors2.f32(), e.vectors2.f32() + e.vectors2.numel(), x.extra2.f32() + at * D2);
    at += n;
    x.replacements.push_back(std::move(r));
  }
  return x;
}

std::vector<Embedding> find_embeddings(std::string& prompt, const std::string& dir, int64_t width,
                                       const std::string& model_family, int64_t width2) {
  std::vector<Embedding> out;
  const bool tagged = prompt.find("embedding:") != std::string::npos;
  if (dir.empty()) {
    if (tagged)
      throw_error(ErrorCode::InvalidArgument, "the prompt uses embedding:NAME but no embeddings folder was given: "
                                              "set embeddingDir (CLI --embd-dir)");
    return out;
  }
  if (!is_dir(dir)) throw_error(ErrorCode::NotFound, "embeddings folder " + dir + " does not exist (embeddingDir / --embd-dir)");
  std::map<std::string, std::string> files;  // lower-case name -> file
  for (const std::string& f : list_dir(dir))
    for (const char* ext : {".pt", ".safetensors", ".bin"}) {
      std::string e = ext;
      if (f.size() > e.size() && lower(f.substr(f.size() - e.size())) == e) files[lower(f.substr(0, f.size() - e.size()))] = f;
    }
  auto word_char = [](char c) { return std::isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.'; };
  // "embedding:NAME" -> NAME (must exist)
  for (size_t p = prompt.find("embedding:"); p != std::string::npos; p = prompt.find("embedding:", p)) {
    size_t b = p + 10, e = b;
    while (e < prompt.size() && word_char(prompt[e])) ++e;
    std::string name = prompt.substr(b, e - b);
    while (!name.empty() && name.back() == '.') name.pop_back(), --e;
    std::string key = lower(name);
    for (const char* ext : {".pt", ".safetensors", ".bin"}) {
      std::string x = ext;
      if (key.size() > x.size() && key.substr(key.size() - x.size()) == x) key = key.substr(0, key.size() - x.size());
    }
    if (!files.count(key)) {
      std::string avail;
      for (const auto& kv : files) avail += (avail.empty() ? "" : ", ") + kv.first;
      throw_error(ErrorCode::NotFound, "embedding '" + name + "' (embedding:" + name + " in the prompt) is not in " + dir +
                                           " (available: " + (avail.empty() ? "none" : avail) +
                                           "): check the name or embeddingDir (CLI --embd-dir)");
    }
    prompt.replace(p, e - p, key);
    p += key.size();
  }
  // plain words equal to a file name
  const std::string lp = lower(prompt);
  for (const auto& kv : files) {
    bool used = false;
    for (size_t p = lp.find(kv.first); p != std::string::npos && !used; p = lp.find(kv.first, p + 1)) {
      size_t e = p + kv.first.size();
      used = (p == 0 || !word_char(lp[p - 1])) && (e >= lp.size() || !word_char(lp[e]));
    }
    if (!used) continue;
    out.push_back(read_embedding(dir + "/" + kv.second, model_family, width, width2));
    out.back().name = kv.first;
  }
  return out;
}

}  // namespace sdn
