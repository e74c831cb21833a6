// Model::load / generate / validate_params: the public txt2img API over the SD1.x pipeline.
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/dtype.h"
#include "core/threadpool.h"
#include "formats/weight_file.h"
#include "pipeline/txt2img.h"
#include "sdn/sdn.h"

namespace sdn {

namespace {

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool dir_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string read_text(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw_error(ErrorCode::NotFound, "cannot read the tokenizer merges file " + p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
std::string parent_dir(const std::string& p) {
  size_t s = p.find_last_of('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

}  // namespace

// Where a per-user copy of the CLIP merges may live: $SDNODE_CACHE_DIR/clip-merges.txt, else
// ~/.cache/sdnode/clip-merges.txt.
std::string user_merges_cache_path() {
  const char* d = std::getenv("SDNODE_CACHE_DIR");
  if (d && *d) return std::string(d) + "/clip-merges.txt";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/sdnode/clip-merges.txt";
}

static std::string find_merges(const std::string& path, const LoadOptions& options, const WeightFile& file) {
  if (!options.tokenizer_path.empty()) {
    if (!file_exists(options.tokenizer_path))
      throw_error(ErrorCode::NotFound, "tokenizer_path " + options.tokenizer_path + " does not exist");
    return read_text(options.tokenizer_path);
  }
  std::string m = file.tokenizer_merges();
  if (!m.empty()) return m;
  std::string dir = dir_exists(path) ? path : parent_dir(path);
  for (const std::string& c : {dir + "/tokenizer/merges.txt", dir + "/merges.txt"})
    if (file_exists(c)) return read_text(c);
  std::string cache = user_merges_cache_path();
  if (file_exists(cache)) return read_text(cache);
  throw_error(ErrorCode::NotFound,
              "no CLIP tokenizer merges found for " + path +
                  ". Give one of: LoadOptions.tokenizer_path (a merges.txt file); a model file with embedded merges "
                  "(GGUF converted with a tokenizer); a diffusers folder with tokenizer/merges.txt (also looked for "
                  "next to the model file); or a per-user copy at " + cache +
                  " (directory from $SDNODE_CACHE_DIR when set).");
}

class SdModel final : public Model {
 public:
  SdModel(std::unique_ptr<WeightFile> file, std::unique_ptr<Txt2ImgPipeline> pipe, ModelInfo info)
      : file_(std::move(file)), pipe_(std::move(pipe)), info_(std::move(info)) {}
  ~SdModel() override {
    pipe_.reset();  // the store refers to the file
    file_.reset();
  }
  const ModelInfo& info() const override { return info_; }
  std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks) override {
    return pipe_->generate(params, callbacks);
  }

 private:
  std::unique_ptr<WeightFile> file_;
  std::unique_ptr<Txt2ImgPipeline> pipe_;
  ModelInfo info_;
};

std::unique_ptr<Model> Model::load(const ModelParts& parts, const LoadOptions& options) {
  if (parts.file.empty()) {
    if (!parts.unet.empty() || !parts.vae.empty() || !parts.text_encoder.empty())
      throw_error(ErrorCode::Unsupported,
                  "loading a model from separate unet/vae/text_encoder files is not supported yet; pass a single "
                  "checkpoint file or a diffusers folder as `file`");
    throw_error(ErrorCode::InvalidArgument, "no model file given");
  }
  DType wtype = DType::Invalid;
  if (!options.weight_type.empty()) {
    wtype = dtype_from_name(options.weight_type);
    if (wtype == DType::Invalid || !dtype_traits(wtype).weight_type)
      throw_error(ErrorCode::InvalidArgument,
                  "weight_type '" + options.weight_type +
                      "' is not a weight type (use f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)");
  }
  if (options.threads > 0) set_threads(options.threads);
  auto report = [&](float f) {
    if (options.on_progress && !options.on_progress(f)) throw_error(ErrorCode::Aborted, "model loading was aborted");
  };
  report(0.f);
  std::unique_ptr<WeightFile> file = WeightFile::open(parts.file);
  ModelInfo info = file->info();
  if (info.family != "sd1")
    throw_error(ErrorCode::Unsupported,
                parts.file + ": model family '" + info.family +
                    "' is not supported for generation yet (only Stable Diffusion 1.x checkpoints are)" +
                    (info.not_runnable_reason.empty() ? "" : ": " + info.not_runnable_reason));
  if (info.variant != "" && info.variant != "base")
    throw_error(ErrorCode::Unsupported, parts.file + ": SD1.x variant '" + info.variant +
                                            "' is not supported for txt2img yet (only base models are)");
  for (const char* req : {"model.diffusion_model.input_blocks.0.0.weight",
                          "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                          "first_stage_model.decoder.conv_in.weight"})
    if (!file->has(req))
      throw_error(ErrorCode::InvalidFile, parts.file + ": tensor " + std::string(req) +
                                              " is missing (the file is not a complete SD1.x checkpoint)");
  std::string merges = find_merges(parts.file, options, *file);
  auto tokenizer = ClipTokenizer::from_merges(merges);
  report(0.05f);
  auto store = std::make_unique<WeightStore>(file.get(), cpu_backend());
  if (wtype != DType::Invalid) {
    convert_weights(*store, {"model.diffusion_model.", "cond_stage_model."}, wtype, [&](int64_t d, int64_t t) {
      if (options.on_progress) return options.on_progress(0.05f + 0.9f * (float)d / (float)(t ? t : 1));
      return true;
    });
  }
  Prediction pred = info.prediction == "v" ? Prediction::V : Prediction::Eps;
  // head counts are not in the tensor shapes: SD1.x defaults, or the values a (test) file records
  ModelConfig cfg;
  const auto& md = file->metadata();
  auto md_int = [&](const char* key, int def) {
    auto it = md.find(key);
    if (it == md.end()) return def;
    int v = std::atoi(it->second.c_str());
    return v > 0 && v <= 1024 ? v : def;
  };
  cfg.clip_heads = md_int("sdnode.clip.heads", 0);
  cfg.unet_heads = md_int("sdnode.unet.heads", 8);
  auto pipe = std::make_unique<Txt2ImgPipeline>(std::move(store), tokenizer, pred, cfg);
  report(1.f);
  return std::make_unique<SdModel>(std::move(file), std::move(pipe), info);
}

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  ModelParts p;
  p.file = path;
  return load(p, options);
}

}  // namespace sdn
