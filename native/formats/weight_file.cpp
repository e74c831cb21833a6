// WeightFile::open: format sniffing, diffusers folders, canonical names, dtype conversion, model detection.
#include "formats/weight_file.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/json.h"
#include "formats/model_files.h"
#include "formats/names.h"
#include "formats/readers.h"
#include "formats/files.h"
#include "sdn/error.h"

namespace sdn {

namespace {

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }


// Natural order: UNet, VAE, text encoders, others; numbers inside names compared as numbers.
int rank(const std::string& n) {
  if (starts_with(n, "model.diffusion_model.")) return 0;
  if (starts_with(n, "first_stage_model.")) return 1;
  if (starts_with(n, "cond_stage_model.")) return 2;
  return 3;
}
bool natural_less(const std::string& a, const std::string& b) {
  int ra = rank(a), rb = rank(b);
  if (ra != rb) return ra < rb;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isdigit((unsigned char)a[i]) && isdigit((unsigned char)b[j])) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && a[i2] == '0') ++i2;
      while (j2 < b.size() && b[j2] == '0') ++j2;
      size_t ie = i2, je = j2;
      while (ie < a.size() && isdigit((unsigned char)a[ie])) ++ie;
      while (je < b.size() && isdigit((unsigned char)b[je])) ++je;
      if (ie - i2 != je - j2) return ie - i2 < je - j2;
      int c = a.compare(i2, ie - i2, b, j2, je - j2);
      if (c) return c < 0;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return (unsigned char)a[i] < (unsigned char)b[j];
      ++i;
      ++j;
    }
  }
  if ((a.size() - i) != (b.size() - j)) return a.size() - i < b.size() - j;
  return a < b;
}

float e4m3_to_f32(uint8_t v) {
  int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
  float r;
  if (e == 15 && m == 7) return s ? -NAN : NAN;
  if (e == 0) r = std::ldexp((float)m / 8.f, -6);
  else r = std::ldexp(1.f + (float)m / 8.f, e - 7);
  return s ? -r : r;
}

// Heap copy of a tensor whose stored element type the kernels do not take.
std::shared_ptr<void> convert_data(const RawTensor& t, int64_t numel) {
  size_t out_es = (size_t)dtype_traits(t.dtype).block_bytes;
  std::shared_ptr<uint8_t> buf(new uint8_t[(size_t)numel * out_es + 1], std::default_delete<uint8_t[]>());
  const uint8_t* s = t.data;
  for (int64_t i = 0; i < numel; ++i) {
    switch (t.conv) {
      case Conv::F64toF32: {
        double d;
        std::memcpy(&d, s + 8 * i, 8);
        float f = (float)d;
        std::memcpy(buf.get() + 4 * i, &f, 4);
        break;
      }
      case Conv::I64toI32: {
        int64_t v;
        std::memcpy(&v, s + 8 * i, 8);
        int32_t w = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
        std::memcpy(buf.get() + 4 * i, &w, 4);
        break;
      }
      case Conv::E4M3toF16: {
        uint16_t h = f32_to_f16(e4m3_to_f32(s[i]));
        std::memcpy(buf.get() + 2 * i, &h, 2);
        break;
      }
      case Conv::E5M2toF16: {
        uint16_t h = (uint16_t)(s[i] << 8);
        std::memcpy(buf.get() + 2 * i, &h, 2);
        break;
      }
      case Conv::None: break;
    }
  }
  return std::shared_ptr<void>(buf, buf.get());
}

constexpr size_t kInfoMetadataEntries = 256;

class WeightFileImpl : public WeightFile {
 public:
  const std::vector<std::string>& names() const override { return names_; }
  bool has(const std::string& name) const override { return tensors_.count(name) != 0; }
  const Tensor& get(const std::string& name) const override {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw_error(ErrorCode::InvalidFile, path_ + ": no tensor " + name);
    if (!it->second.data && it->second.numel() != 0)
      throw_error(ErrorCode::Internal, path_ + ": tensor " + name + " was opened without data");
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const ModelInfo& info() const override { return info_; }
  std::string tokenizer_merges() const override { return merges_; }
  void release(const std::string& prefix) override {
    for (auto it = src_.lower_bound(prefix); it != src_.end() && starts_with(it->first, prefix); ++it)
      if (it->second.map) it->second.map->release(it->second.offset, it->second.nbytes);
  }
  void prefetch(const std::string& prefix, const std::atomic<bool>* stop) const override {
    // the tensors' byte ranges per mapping, sorted and merged (a block's tensors are mostly adjacent in the file)
    std::map<const MappedFile*, std::vector<std::pair<size_t, size_t>>> ranges;
    for (auto it = src_.lower_bound(prefix); it != src_.end() && starts_with(it->first, prefix); ++it)
      if (it->second.map && it->second.nbytes) ranges[it->second.map.get()].push_back({it->second.offset, it->second.offset + it->second.nbytes});
    constexpr size_t kChunk = 32u << 20;
    constexpr size_t kGap = 1u << 20;  // small holes between tensors are read too (fewer, larger reads)
    for (auto& kv : ranges) {
      std::sort(kv.second.begin(), kv.second.end());
      std::vector<std::pair<size_t, size_t>> merged;
      for (const auto& r : kv.second) {
        if (!merged.empty() && r.first <= merged.back().second + kGap) merged.back().second = std::max(merged.back().second, r.second);
        else merged.push_back(r);
      }
      for (const auto& r : merged)
        for (size_t o = r.first; o < r.second; o += kChunk) {
          if (stop && stop->load(std::memory_order_relaxed)) return;
          const size_t n = std::min(kChunk, r.second - o);
          if (!kv.first->resident(o, n)) kv.first->prefetch(o, n);
        }
    }
  }

  // Adds the tensors of one raw model (a file or a diffusers component).
  void add(RawModel& raw, const NameMapper& mapper, const std::string& file, bool load_data) {
    for (RawTensor& t : raw.tensors) {
      std::string canon = mapper.map(t.component, t.name);
      if (canon.empty()) continue;
      int64_t numel;
      if (!checked_numel(t.shape, &numel)) throw_error(ErrorCode::InvalidFile, file + ": tensor \"" + t.name + "\": bad shape");
      std::vector<int64_t> shape = t.shape;
      if (is_vae_attention_projection(canon) && shape.size() == 2) shape = {shape[0], shape[1], 1, 1};
      Tensor x;
      x.dtype = t.dtype;
      x.ndim = (int)shape.size();
      for (int i = 0; i < kMaxDims; ++i) x.shape[i] = i < x.ndim ? shape[(size_t)i] : 1;
      x.set_contiguous_strides();
      // The kernels load a tensor's elements (f32: 4 bytes; f16/bf16 and the 16-bit scales inside quantized blocks:
      // 2 bytes) straight from the mapped file, so data must sit at a multiple of that size. Only tensors that do
      // not (e.g. a .ckpt whose zip entries are not aligned) get an aligned heap copy: the mapped pages of the rest
      // stay shared with the page cache (a safetensors header of any length leaves f16 data 2-byte aligned).
      const DTypeTraits& tr = dtype_traits(t.dtype);
      const uintptr_t need = tr.quantized ? 2 : (uintptr_t)std::min<int64_t>(4, std::max<int64_t>(1, tr.block_bytes));
      if (t.conv == Conv::None && load_data && reinterpret_cast<uintptr_t>(t.data) % need != 0) {
        std::shared_ptr<uint8_t> buf(new uint8_t[t.nbytes + 1], std::default_delete<uint8_t[]>());
        if (t.nbytes) std::memcpy(buf.get(), t.data, t.nbytes);
        x.owner = std::shared_ptr<void>(buf, buf.get());
        x.data = buf.get();
      } else if (t.conv == Conv::None) {
        x.data = const_cast<uint8_t*>(t.data);
        x.owner = t.map;
      } else if (load_data) {
        x.owner = convert_data(t, numel);
        x.data = x.owner.get();
      }
      if (!tensors_.emplace(canon, x).second)
        throw_error(ErrorCode::InvalidFile, file + ": tensor \"" + t.name + "\" maps to \"" + canon +
                                                "\", which another tensor of the model already has (duplicate weights)");
      src_[canon] = Src{t.map, t.offset, t.nbytes};
      stored_bytes_ += (int64_t)t.nbytes;
    }
  }

  void finish(const std::string& path, const std::string& format) {
    path_ = path;
    for (auto& kv : tensors_) names_.push_back(kv.first);
    std::sort(names_.begin(), names_.end(), natural_less);
    info_.path = path;
    info_.format = format;
    info_.tensor_count = (int64_t)names_.size();
    info_.parameter_count = 0;
    for (auto& kv : tensors_) {
      info_.parameter_count += kv.second.numel();
      info_.tensors_by_type[dtype_name(kv.second.dtype)]++;
    }
    info_.size_bytes = stored_bytes_;
    // What inspect() / `sdnode info` show: bounded whatever the file holds (at most kInfoMetadataEntries keys of
    // at most 256 bytes, values cut at 1024 bytes); how many were left out is said under one extra key.
    size_t shown = 0;
    for (auto& kv : metadata_) {
      if (shown == kInfoMetadataEntries) break;
      std::string k = kv.first.size() > 256 ? kv.first.substr(0, 256) + "..." : kv.first;
      info_.metadata[k] = kv.second.size() > 1024 ? kv.second.substr(0, 1024) + "..." : kv.second;
      ++shown;
    }
    const size_t omitted = metadata_.size() - shown + metadata_omitted_;
    if (omitted) info_.metadata[kMetadataOmittedKey] = std::to_string(omitted) + " more metadata keys not shown";
    info_.has_tokenizer = !merges_.empty();
    detect_model(tensors_, metadata_, info_);
  }

  struct Src {
    std::shared_ptr<MappedFile> map;
    size_t offset = 0, nbytes = 0;
  };
  std::string path_;
  std::vector<std::string> names_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, Src> src_;
  std::map<std::string, std::string> metadata_;
  size_t metadata_omitted_ = 0;
  ModelInfo info_;
  std::string merges_;
  int64_t stored_bytes_ = 0;
};

std::unique_ptr<WeightFile> open_single(const std::string& path, const OpenOptions& opt) {
  RawModel raw;
  if (ends_with(path, ".index.json")) {
    raw = read_safetensors_index(path);
  } else {
    auto map = MappedFile::open(path);
    const uint8_t* d = map->data();
    size_t n = map->size();
    std::string lower = path;
    for (char& c : lower) c = (char)std::tolower((unsigned char)c);
    bool pickle_ext = ends_with(lower, ".ckpt") || ends_with(lower, ".pt") || ends_with(lower, ".pth") ||
                      ends_with(lower, ".bin");
    bool zip = n >= 4 && d[0] == 'P' && d[1] == 'K' && d[2] == 3 && d[3] == 4;
    bool pickle = n >= 2 && d[0] == 0x80 && d[1] >= 2 && d[1] <= 5;
    if (n >= 4 && std::memcmp(d, "GGUF", 4) == 0) {
      raw = parse_gguf(d, n, path, map);
    } else if (zip || pickle) {
      raw = parse_ckpt(d, n, path, map);
    } else if (pickle_ext && !(n > 8 && d[8] == '{')) {
      throw_error(ErrorCode::InvalidFile, path + ": not a PyTorch zip checkpoint (no zip or pickle signature)");
    } else if (n >= 9 && d[8] == '{') {
      raw = parse_safetensors(d, n, path, map);
    } else if (ends_with(lower, ".safetensors")) {
      raw = parse_safetensors(d, n, path, map);  // gives the precise header error
    } else {
      throw_error(ErrorCode::InvalidFile, path + ": not a recognised model file (expected .safetensors, .gguf or a "
                                                 "diffusers folder)");
    }
  }
  return weight_file_from_raw(raw, path, opt.load_data);
}

}  // namespace

std::unique_ptr<WeightFile> weight_file_from_raw(RawModel& raw, const std::string& what, bool load_data) {
  auto wf = std::make_unique<WeightFileImpl>();
  std::vector<std::pair<std::string, std::string>> names;
  for (auto& t : raw.tensors) names.emplace_back(t.component, t.name);
  NameMapper mapper(names);
  wf->metadata_ = raw.metadata;
  wf->metadata_omitted_ = raw.metadata_omitted;
  wf->merges_ = raw.merges;
  wf->add(raw, mapper, what, load_data);
  wf->finish(what, raw.format);
  return wf;
}

namespace {

// Finds a component's weights file inside a diffusers sub-folder; "" if the folder is absent.
std::string diffusers_component_file(const std::string& dir, const std::string& comp) {
  std::string d = dir + "/" + comp;
  if (!is_dir(d)) return "";
  static const char* kNames[] = {
      "diffusion_pytorch_model.safetensors",          "model.safetensors",
      "diffusion_pytorch_model.fp16.safetensors",     "model.fp16.safetensors",
      "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
      "diffusion_pytorch_model.fp16.safetensors.index.json", "model.fp16.safetensors.index.json"};
  for (const char* n : kNames)
    if (is_file(d + "/" + n)) return d + "/" + n;
  static const char* kPickles[] = {"diffusion_pytorch_model.bin", "pytorch_model.bin", "diffusion_pytorch_model.fp16.bin",
                                   "pytorch_model.fp16.bin"};
  for (const char* n : kPickles)
    if (is_file(d + "/" + n)) return d + "/" + n;
  throw_error(ErrorCode::InvalidFile, d + ": no weights file (expected diffusion_pytorch_model.safetensors or "
                                          "model.safetensors)");
}

std::unique_ptr<WeightFile> open_diffusers(const std::string& dir, const OpenOptions& opt) {
  auto wf = std::make_unique<WeightFileImpl>();
  if (is_file(dir + "/model_index.json")) {
    json::Value idx = json::parse_file(dir + "/model_index.json");
    if (const json::Value* c = idx.find("_class_name"))
      if (c->is_string()) wf->metadata_["diffusers.class_name"] = c->str;
  }
  if (is_file(dir + "/scheduler/scheduler_config.json")) {
    json::Value sc = json::parse_file(dir + "/scheduler/scheduler_config.json");
    if (const json::Value* p = sc.find("prediction_type"))
      if (p->is_string()) wf->metadata_["diffusers.prediction_type"] = p->str;
  }
  std::vector<RawModel> parts;
  std::vector<std::string> files;
  for (const char* comp : {"unet", "vae", "text_encoder", "text_encoder_2"}) {
    std::string f = diffusers_component_file(dir, comp);
    if (f.empty()) continue;
    RawModel r;
    if (ends_with(f, ".index.json")) {
      r = read_safetensors_index(f);
    } else if (ends_with(f, ".bin")) {
      auto map = MappedFile::open(f);
      r = parse_ckpt(map->data(), map->size(), f, map);
    } else {
      r = read_safetensors(f);
    }
    for (auto& t : r.tensors) t.component = comp;
    for (auto& kv : r.metadata) wf->metadata_.emplace(kv.first, kv.second);
    wf->metadata_omitted_ += r.metadata_omitted;
    parts.push_back(std::move(r));
    files.push_back(f);
  }
  if (parts.empty())
    throw_error(ErrorCode::InvalidFile, dir + ": a folder, but not a diffusers model (no unet/, vae/ or text_encoder/ "
                                              "with .safetensors weights)");
  std::vector<std::pair<std::string, std::string>> names;
  for (auto& r : parts)
    for (auto& t : r.tensors) names.emplace_back(t.component, t.name);
  NameMapper mapper(names);
  for (size_t i = 0; i < parts.size(); ++i) wf->add(parts[i], mapper, files[i], opt.load_data);
  if (is_file(dir + "/tokenizer/merges.txt")) wf->merges_ = read_small_file(dir + "/tokenizer/merges.txt", 64u << 20);
  wf->finish(dir, "diffusers");
  return wf;
}

}  // namespace

std::unique_ptr<WeightFile> open_weight_file(const std::string& path, const OpenOptions& options) {
  if (path.empty()) throw_error(ErrorCode::InvalidArgument, "model path is empty");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw_error(ErrorCode::NotFound, path + ": no such file or folder");
    throw_error(ErrorCode::Io, path + ": cannot access (" + std::strerror(errno) + ")");
  }
  if (S_ISDIR(st.st_mode)) return open_diffusers(path, options);
  if (ends_with(path, "model_index.json")) {
    std::string dir = path.size() > 16 ? path.substr(0, path.size() - 17) : ".";
    return open_diffusers(dir.empty() ? "." : dir, options);
  }
  return open_single(path, options);
}

std::unique_ptr<WeightFile> WeightFile::open(const std::string& path) { return open_weight_file(path, OpenOptions()); }

// ---------------------------------------------------------------------------------------------------------
// Detection (ENGINE-FACTS 4.8, by structure rather than widths so that tiny test models are recognised too)
// ---------------------------------------------------------------------------------------------------------
void detect_model(const std::map<std::string, Tensor>& t, const std::map<std::string, std::string>& md,
                  ModelInfo& info) {
  const std::string U = "model.diffusion_model.";
  const std::string TE = "cond_stage_model.transformer.text_model.";
  bool has_unet = false, has_vae = false, has_te = false, has_te2 = false;
  for (auto& kv : t) {
    const std::string& n = kv.first;
    if (starts_with(n, U)) has_unet = true;
    else if (starts_with(n, "first_stage_model.")) has_vae = true;
    else if (starts_with(n, "cond_stage_model.1.")) has_te2 = true;
    else if (starts_with(n, "cond_stage_model.")) has_te = true;
  }
  auto find = [&](const std::string& n) -> const Tensor* {
    auto it = t.find(n);
    return it == t.end() ? nullptr : &it->second;
  };
  auto first_with_suffix = [&](const std::string& prefix, const std::string& suffix) -> const Tensor* {
    for (auto it = t.lower_bound(prefix); it != t.end() && starts_with(it->first, prefix); ++it)
      if (ends_with(it->first, suffix)) return &it->second;
    return nullptr;
  };
  const Tensor* conv_in = find(U + "input_blocks.0.0.weight");
  const Tensor* proj_in = first_with_suffix(U, ".proj_in.weight");
  const Tensor* to_k = first_with_suffix(U, ".attn2.to_k.weight");
  const Tensor* tok = find(TE + "embeddings.token_embedding.weight");
  bool openclip_te = first_with_suffix(TE + "encoder.layers.", ".self_attn.in_proj.weight") != nullptr;
  bool label_emb = find(U + "label_emb.0.0.weight") != nullptr;
  int64_t in_ch = conv_in && conv_in->ndim == 4 ? conv_in->shape[1] : 0;
  int64_t ctx = to_k && to_k->ndim == 2 ? to_k->shape[1] : 0;
  int64_t width = tok && tok->ndim == 2 ? tok->shape[1] : 0;

  std::string family = "unknown";
  if (has_te2 || label_emb || ctx == 2048) family = "sdxl";
  else if (has_unet || has_te) {
    if ((proj_in && proj_in->ndim == 2) || openclip_te || width == 1024 || ctx == 1024) family = "sd2";
    else if ((proj_in && proj_in->ndim == 4) || (has_te && !openclip_te)) family = "sd1";
  }
  if (family == "unknown") {
    auto it = md.find("sdnode.family");
    if (it != md.end() && (it->second == "sd1" || it->second == "sd2" || it->second == "sdxl")) family = it->second;
  }
  info.family = family;

  // Size rule: the VAE scales by 8 and each U-Net downsampling (input_blocks.N.0.op) halves the latent.
  if (has_unet) {
    int downsamples = 0;
    for (auto it = t.lower_bound(U + "input_blocks."); it != t.end() && starts_with(it->first, U + "input_blocks."); ++it)
      if (ends_with(it->first, ".0.op.weight")) downsamples++;
    if (downsamples < 8) info.size_multiple = 8 << downsamples;
  }

  std::string variant;
  if (in_ch == 9) variant = "inpaint";
  else if (in_ch == 8) variant = "pix2pix";
  else if (in_ch == 4) variant = "base";
  else if (!has_unet && has_vae && !has_te) variant = "vae";
  else if (!has_unet && has_te && !has_vae) variant = "text-encoder";
  if (has_unet && !find(U + "middle_block.1.norm.weight") && family != "unknown") variant += variant.empty() ? "distilled" : "-distilled";
  info.variant = variant;

  // Prediction type: declared in metadata, or implied by marker tensors; SD1 and SDXL default to eps.
  std::string pred;
  auto get = [&](const char* k) -> std::string {
    auto it = md.find(k);
    return it == md.end() ? "" : it->second;
  };
  auto norm_pred = [](const std::string& v) -> std::string {
    if (v == "v" || v == "v_prediction" || v == "v-prediction" || v == "vpred") return "v";
    if (v == "eps" || v == "epsilon") return "eps";
    return "";
  };
  pred = norm_pred(get("sdnode.prediction"));
  if (pred.empty()) pred = norm_pred(get("modelspec.prediction_type"));
  if (pred.empty()) pred = norm_pred(get("diffusers.prediction_type"));
  if (pred.empty() && (find("v_pred") || find("edm_vpred.sigma_max"))) pred = "v";
  if (pred.empty()) {
    std::string arch = get("modelspec.architecture");
    if (ends_with(arch, "-v") || arch.find("768-v") != std::string::npos) pred = "v";
  }
  std::string source = pred.empty() ? "" : "file";
  if (pred.empty() && (family == "sd1" || family == "sdxl")) {
    pred = "eps";
    source = "family";
  }
  info.prediction = pred;
  info.prediction_source = source;

  info.runnable = false;
  std::string why;
  if (family == "unknown") why = "not a recognised Stable Diffusion model (no SD1/SD2/SDXL UNet or text encoder tensors found)";
  else if (!has_unet) why = "the file has no UNet weights (model.diffusion_model.*)";
  else if (!has_vae) why = "the file has no VAE weights (first_stage_model.*); give a VAE file as well";
  else if (!has_te || !tok) why = "the file has no CLIP text encoder weights (cond_stage_model.*)";
  else if (family == "sdxl" && !has_te2)
    why = "the file has no second text encoder (OpenCLIP bigG: conditioner.embedders.1.*, text_encoder_2/)";
  else if (variant.find("distilled") != std::string::npos) why = "distilled UNets without a middle attention block are not supported";
  else if (variant != "base" && variant != "inpaint") why = variant + " models are not supported yet (base and inpainting models are)";
  else info.runnable = true;  // eps or v prediction (v: denoiser scalings of the v parameterisation)
  info.not_runnable_reason = why;
}

}  // namespace sdn
