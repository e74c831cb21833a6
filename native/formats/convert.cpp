// inspect_model and convert_model (GGUF v3 writer with per-tensor type rules).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

#include "core/quant.h"
#include "formats/files.h"
#include "formats/gguf.h"
#include "formats/model_files.h"
#include "sdn/sdn.h"

namespace sdn {

ModelInfo inspect_model(const std::string& path) {
  OpenOptions o;
  o.load_data = false;
  return open_weight_file(path, o)->info();
}

namespace {

bool ends_with(const std::string& s, const char* p) {
  size_t n = std::strlen(p);
  return s.size() >= n && s.compare(s.size() - n, n, p) == 0;
}
bool starts_with(const std::string& s, const char* p) { return s.compare(0, std::strlen(p), p) == 0; }
bool contains(const std::string& s, const char* p) { return s.find(p) != std::string::npos; }
bool is_float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

DType parse_type(const std::string& s, const char* what) {
  DType t = dtype_from_name(s);
  if (t == DType::Invalid || !dtype_traits(t).weight_type)
    throw_error(ErrorCode::InvalidArgument, std::string(what) + " \"" + s +
                                                "\" is not a weight type (use f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, "
                                                "q4_1, q4_K, q5_K or q6_K)");
  return t;
}

}  // namespace

// The output type of one tensor (documented rule, see docs in the report / README):
//  * non-float sources (I32 etc.) stay as they are;
//  * 1-D tensors, biases, norm weights and scalars -> F32 (tiny and precision-critical);
//  * token/position embeddings, time_embed.*, label_emb.* -> the target type if it is a float type, else F16;
//  * first_stage_model.* (VAE) weights of 2+ dims -> vae_type (falls back to F16 when a quantized vae_type does not
//    divide the row length);
//  * other weights of 2+ dims -> the target type when the row length (last torch dim = ne[0]) is a multiple of its
//    block size, else F16 (3x3 and 1x1 conv kernels under a quantized target).
DType convert_target_type(const std::string& name, const Tensor& t, DType target, DType vae_target) {
  if (!is_float_type(t.dtype) && !dtype_traits(t.dtype).quantized) return t.dtype;
  if (t.ndim <= 1 || ends_with(name, ".bias") || contains(name, "norm")) return DType::F32;
  DType want = target;
  if (starts_with(name, "first_stage_model.")) want = vae_target;
  if (contains(name, "embedding") || contains(name, "time_embed.") || contains(name, "label_emb."))
    want = is_float_type(target) ? target : DType::F16;
  int64_t row = t.shape[t.ndim - 1];
  if (row % dtype_traits(want).block_size != 0) want = DType::F16;
  return want;
}

namespace {

struct TempFile {
  std::string path;
  std::FILE* f = nullptr;
  bool keep = false;
  ~TempFile() {
    if (f) std::fclose(f);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

void convert_rows(const Tensor& src, DType to, std::vector<uint8_t>& out, std::vector<float>& row_f32) {
  int64_t row = src.ndim ? src.shape[src.ndim - 1] : 1;
  int64_t rows = row ? src.numel() / row : 0;
  size_t in_rb = dtype_row_bytes(src.dtype, row), out_rb = dtype_row_bytes(to, row);
  out.resize((size_t)rows * out_rb);
  row_f32.resize((size_t)row);
  const uint8_t* s = static_cast<const uint8_t*>(src.data);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = s + (size_t)r * in_rb;
    uint8_t* o = out.data() + (size_t)r * out_rb;
    const float* f;
    if (src.dtype == DType::F32) {
      f = reinterpret_cast<const float*>(in);  // may be unaligned in safetensors: copy below handles it
      std::memcpy(row_f32.data(), in, (size_t)row * 4);
      f = row_f32.data();
    } else {
      dequantize_row(src.dtype, in, row_f32.data(), row);
      f = row_f32.data();
    }
    switch (to) {
      case DType::F32: std::memcpy(o, f, (size_t)row * 4); break;
      case DType::F16:
        for (int64_t i = 0; i < row; ++i) {
          uint16_t h = f32_to_f16(f[i]);
          std::memcpy(o + 2 * i, &h, 2);
        }
        break;
      case DType::BF16:
        for (int64_t i = 0; i < row; ++i) {
          uint16_t h = f32_to_bf16(f[i]);
          std::memcpy(o + 2 * i, &h, 2);
        }
        break;
      default: quantize_row(to, f, o, row);
    }
  }
}

}  // namespace

ConvertSummary convert_model(const std::string& input, const std::string& output, const ConvertOptions& options) {
  if (output.empty()) throw_error(ErrorCode::InvalidArgument, "convert: output path is empty");
  DType target = parse_type(options.type, "type");
  DType vae_target = parse_type(options.vae_type.empty() ? "f16" : options.vae_type, "vae_type");
  auto wf = open_weight_file(input, OpenOptions());
  const ModelInfo& info = wf->info();

  std::string merges = wf->tokenizer_merges();
  if (!options.tokenizer_path.empty()) merges = read_merges_file(options.tokenizer_path, "tokenizer_path");
  if (merges.empty()) merges = options.fallback_merges;  // the shipped table: a converted GGUF is self-contained

  gguf::Writer w;
  w.add_string("general.architecture", "stable-diffusion");
  std::string base = info.path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  w.add_string("general.name", base.substr(base.find_last_of('/') == std::string::npos ? 0 : base.find_last_of('/') + 1));
  w.add_string("sdnode.family", info.family);
  if (!info.variant.empty()) w.add_string("sdnode.variant", info.variant);
  if (!info.prediction.empty()) w.add_string("sdnode.prediction", info.prediction);
  w.add_string("sdnode.source_format", info.format);
  for (auto& kv : wf->metadata()) {
    if (kv.first.rfind("general.", 0) == 0 || kv.first == gguf::kMergesKey || kv.first == "sdnode.family" ||
        kv.first == "sdnode.variant" || kv.first == "sdnode.prediction" || kv.first == "sdnode.source_format")
      continue;
    w.add_string(kv.first, kv.second);
  }
  if (!merges.empty()) w.add_string(gguf::kMergesKey, merges);

  ConvertSummary sum;
  std::vector<DType> types;
  // A diffusers (HF) text projection is the Linear weight P^T; stable-diffusion.cpp's files hold the OpenCLIP
  // matrix P under "...text_model.text_projection": written transposed under that name.
  std::map<std::string, std::pair<std::string, Tensor>> replaced;  // canonical name -> (written name, tensor)
  auto out_name = [&](const std::string& n) { auto it = replaced.find(n); return it == replaced.end() ? n : it->second.first; };
  auto src = [&](const std::string& n) -> const Tensor& {
    auto it = replaced.find(n);
    return it == replaced.end() ? wf->get(n) : it->second.second;
  };
  for (const std::string& n : wf->names()) {
    static const std::string kSuffix = "text_model.text_projection.weight";
    if (n.size() < kSuffix.size() || n.compare(n.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) continue;
    const Tensor& t = wf->get(n);
    if (t.ndim != 2 || !t.data) continue;
    Tensor f = t.to_f32();
    const int64_t r = f.shape[0], c = f.shape[1];
    std::vector<float> tr((size_t)r * c);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) tr[(size_t)j * r + i] = f.f32()[i * c + j];
    replaced[n] = {n.substr(0, n.size() - 7), Tensor::from_vector({c, r}, tr)};
  }
  for (const std::string& n : wf->names()) {
    const Tensor& t = src(n);
    DType to = convert_target_type(n, t, target, vae_target);
    gguf::TensorDesc d;
    d.name = out_name(n);
    d.dtype = to;
    d.shape = t.sizes();
    Tensor probe = t;
    probe.dtype = to;
    d.nbytes = probe.nbytes();
    w.add_tensor(d);
    types.push_back(to);
    sum.bytes_in += (int64_t)t.nbytes();
  }
  int64_t total = (int64_t)types.size();
  TempFile tmp;
  tmp.path = output + ".part";
  tmp.f = std::fopen(tmp.path.c_str(), "wb");
  if (!tmp.f) throw_error(ErrorCode::Io, output + ": cannot create (" + std::strerror(errno) + ")");
  w.begin(tmp.f, output);
  std::vector<uint8_t> buf;
  std::vector<float> row;
  if (options.on_progress && !options.on_progress(0, total)) throw_error(ErrorCode::Aborted, "convert: aborted");
  for (int64_t i = 0; i < total; ++i) {
    const std::string& n = wf->names()[(size_t)i];
    const Tensor& t = src(n);
    DType to = types[(size_t)i];
    if (to == t.dtype) {
      w.write_data((size_t)i, t.data, t.nbytes());
    } else {
      convert_rows(t, to, buf, row);
      w.write_data((size_t)i, buf.data(), buf.size());
    }
    sum.tensors_by_type[dtype_name(to)]++;
    // Pages of the source are not needed again.
    wf->release(n);
    if (options.on_progress && !options.on_progress(i + 1, total)) throw_error(ErrorCode::Aborted, "convert: aborted");
  }
  if (std::fflush(tmp.f) != 0 || std::fclose(tmp.f) != 0) {
    tmp.f = nullptr;
    throw_error(ErrorCode::Io, output + ": write failed (" + std::strerror(errno) + ")");
  }
  tmp.f = nullptr;
  if (std::rename(tmp.path.c_str(), output.c_str()) != 0)
    throw_error(ErrorCode::Io, output + ": cannot rename from " + tmp.path + " (" + std::strerror(errno) + ")");
  tmp.keep = true;
  sum.tensor_count = total;
  sum.bytes_out = (int64_t)w.bytes_written();
  return sum;
}

}  // namespace sdn
