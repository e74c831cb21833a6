// Model::load / generate / validate_params: the public txt2img API over the SD1.x pipeline.
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>

#include "backends/backend.h"
#include "core/dtype.h"
#include "core/threadpool.h"
#include "formats/files.h"
#include "formats/weight_file.h"
#include "models/validate.h"
#include "models/taesd.h"
#include "pipeline/pipeline.h"
#include "sdn/sdn.h"

namespace sdn {

namespace {

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

// An explicit tokenizer path: a merges file, or a folder holding merges.txt or tokenizer/merges.txt. Anything else
// (missing, a FIFO, a device, a folder without merges) is reported as what it is.
static std::string merges_in(const std::string& path) {
  const std::string kind = path_kind(path);
  if (kind.empty()) throw_error(ErrorCode::NotFound, "tokenizer merges " + path + " do not exist");
  if (kind == "a folder") {
    for (const std::string& c : {path + "/merges.txt", path + "/tokenizer/merges.txt"})
      if (is_file(c)) return read_merges_file(c, "tokenizer");
    throw_error(ErrorCode::NotFound, "tokenizer path " + path +
                                         " is a folder without merges.txt or tokenizer/merges.txt in it");
  }
  return read_merges_file(path, "tokenizer path");  // refuses FIFOs and devices without opening them
}

// The explicit tokenizer (LoadOptions / parts), read before any model file is opened so that a bad path is
// reported first and cheaply; "" when none was given.
static std::string explicit_merges(const ModelParts& parts, const LoadOptions& options) {
  for (const std::string& explicit_path : {options.tokenizer_path, parts.tokenizer})
    if (!explicit_path.empty()) return merges_in(explicit_path);
  return "";
}

// files: the opened model files with their paths (base file first if any).
static std::string find_merges(const std::string& explicit_m, const LoadOptions& options,
                               const std::vector<std::pair<std::string, const WeightFile*>>& files) {
  if (!explicit_m.empty()) return explicit_m;
  for (const auto& f : files) {
    std::string m = f.second->tokenizer_merges();
    if (!m.empty()) return m;
  }
  for (const auto& f : files) {
    std::string dir = is_dir(f.first) ? f.first : parent_dir(f.first);
    for (const std::string& c : {dir + "/tokenizer/merges.txt", dir + "/merges.txt", dir + "/../tokenizer/merges.txt"})
      if (is_file(c)) return read_merges_file(c, "tokenizer");
  }
  std::string cache = user_merges_cache_path();
  if (is_file(cache)) return read_merges_file(cache, "cached tokenizer");
  if (!options.fallback_merges.empty()) return options.fallback_merges;
  std::string what = files.empty() ? std::string("the model") : files.front().first;
  throw_error(ErrorCode::NotFound,
              "no CLIP tokenizer merges found for " + what +
                  ". Give one of: an explicit merges.txt file (tokenizerPath in JavaScript, --tokenizer on the command line); a model file with embedded merges "
                  "(GGUF converted with a tokenizer); a diffusers folder with tokenizer/merges.txt (also looked for "
                  "next to the model file); or a per-user copy at " + cache +
                  " (directory from $SDNODE_CACHE_DIR when set).");
}

class SdModel final : public Model {
 public:
  SdModel(BackendChoice backend, std::vector<std::unique_ptr<WeightFile>> files, std::unique_ptr<TaesdFile> taesd,
          std::unique_ptr<DiffusionPipeline> pipe, ModelInfo info)
      : backend_(std::move(backend)), files_(std::move(files)), taesd_(std::move(taesd)), pipe_(std::move(pipe)),
        info_(std::move(info)) {}
  ~SdModel() override {
    pipe_.reset();  // the store refers to the files and the backend
    taesd_.reset();
    files_.clear();
  }
  const ModelInfo& info() const override { return info_; }
  std::string device() const override { return backend_.description; }
  MemoryUse memory_use() const override {
    MemoryStats m = backend_.backend->memory_stats();
    MemoryUse u;
    u.activations = m.in_use;
    u.peak_activations = m.peak;
    u.weights = m.weights;
    u.peak_weights = m.peak_weights;
    u.stream_area = m.stream_area;
    u.host_weights = m.host_weights;
    u.streamed = m.streamed;
    return u;
  }
  std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks) override {
    return pipe_->generate(params, callbacks);
  }

 private:
  BackendChoice backend_;  // outlives everything below (tensors of the pipeline live on it)
  std::vector<std::unique_ptr<WeightFile>> files_;
  std::unique_ptr<TaesdFile> taesd_;  // LoadOptions::taesd_path, or null
  std::unique_ptr<DiffusionPipeline> pipe_;
  ModelInfo info_;
};

static void require_runnable(const std::string& path, const ModelInfo& info) {
  if (info.family != "sd1" && info.family != "sd2" && info.family != "sdxl")
    throw_error(ErrorCode::Unsupported,
                path + ": model family '" + info.family +
                    "' is not supported for generation (Stable Diffusion 1.x, 2.x and SDXL checkpoints are)" +
                    (info.not_runnable_reason.empty() ? "" : ": " + info.not_runnable_reason));
  if (info.variant != "" && info.variant != "base" && info.variant != "inpaint")
    throw_error(ErrorCode::Unsupported, path + ": " + info.family + " variant '" + info.variant +
                                            "' is not supported yet (base and inpainting models are)");
}

std::unique_ptr<Model> Model::load(const ModelParts& parts, const LoadOptions& options) {
  const bool any_part = !parts.unet.empty() || !parts.vae.empty() || !parts.text_encoder.empty();
  if (parts.file.empty() && !any_part)
    throw_error(ErrorCode::InvalidArgument, "no model file given (pass a checkpoint file or diffusers folder, or "
                                            "unet, vae and text_encoder files)");
  if (parts.file.empty() && parts.unet.empty())
    throw_error(ErrorCode::InvalidArgument, "loading from parts needs the unet file (or a base checkpoint as file)");
  DType wtype = DType::Invalid;
  if (!options.weight_type.empty()) {
    wtype = dtype_from_name(options.weight_type);
    if (wtype == DType::Invalid || !dtype_traits(wtype).weight_type)
      throw_error(ErrorCode::InvalidArgument,
                  "weight_type '" + options.weight_type +
                      "' is not a weight type (use f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)");
  }
  validate_threads(options.threads);
  std::string explicit_m = explicit_merges(parts, options);
  auto report = [&](float f) {
    if (options.on_progress && !options.on_progress(f)) throw_error(ErrorCode::Aborted, "model loading was aborted");
  };
  report(0.f);
  std::vector<std::unique_ptr<WeightFile>> owned;
  std::vector<std::pair<std::string, const WeightFile*>> opened;  // (path, file), for the tokenizer search
  auto open = [&](const std::string& path) {
    owned.push_back(WeightFile::open(path));
    opened.push_back({path, owned.back().get()});
    return owned.back().get();
  };
  WeightFile* base = parts.file.empty() ? nullptr : open(parts.file);
  WeightFile* unet = parts.unet.empty() ? nullptr : open(parts.unet);
  WeightFile* vae = parts.vae.empty() ? nullptr : open(parts.vae);
  WeightFile* te = parts.text_encoder.empty() ? nullptr : open(parts.text_encoder);
  // the family comes from the U-Net
  const std::string main_path = unet ? parts.unet : parts.file;
  ModelInfo info = (unet ? unet : base)->info();
  require_runnable(main_path, info);
  if (!options.prediction.empty() && options.prediction != "eps" && options.prediction != "v")
    throw_error(ErrorCode::InvalidArgument, "prediction must be 'eps' or 'v' (or empty: from the file), got '" +
                                                options.prediction + "'");
  BackendOptions bo;
  bo.threads = options.threads;
  bo.vram_budget = options.vram_budget;
  BackendChoice backend = create_backend(options.device, bo);
  Placement placement;
  if (options.vae_tiling == "on") placement.vae_tiling = VaeTiling::On;
  else if (options.vae_tiling == "off") placement.vae_tiling = VaeTiling::Off;
  else if (options.vae_tiling != "auto" && !options.vae_tiling.empty())
    throw_error(ErrorCode::InvalidArgument, "vae_tiling must be auto, on or off, got '" + options.vae_tiling + "'");
  // components placed on the CPU get their own store over the same files, on a CPU backend
  const bool place_cpu = !backend.backend->is_host() && (options.text_encoder_on_cpu || options.vae_on_cpu);
  placement.text_encoder_on_cpu = place_cpu && options.text_encoder_on_cpu;
  placement.vae_on_cpu = place_cpu && options.vae_on_cpu;
  if (place_cpu) backend.cpu = make_cpu_backend(bo);
  auto make_store = [&](Backend& be) {
    auto st = std::make_unique<WeightStore>(base, be);
    if (unet) st->add_file("model.diffusion_model.", unet);
    if (vae) st->add_file("first_stage_model.", vae);
    if (te) st->add_file("cond_stage_model.", te);
    return st;
  };
  auto store = make_store(*backend.backend);
  std::unique_ptr<WeightStore> cpu_store = place_cpu ? make_store(*backend.cpu) : nullptr;
  struct Req {
    const char* name;
    const char* part;
  };
  std::vector<Req> reqs = {Req{"model.diffusion_model.input_blocks.0.0.weight", "U-Net"},
                           Req{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                               info.family == "sdxl" ? "first text encoder (CLIP-L)" : "text encoder"},
                           Req{"first_stage_model.decoder.conv_in.weight", "VAE decoder"}};
  if (info.family == "sdxl")
    reqs.push_back(Req{"cond_stage_model.1.transformer.text_model.embeddings.token_embedding.weight",
                       "second text encoder (OpenCLIP bigG)"});
  for (const Req& r : reqs)
    if (!store->has(r.name))
      throw_error(ErrorCode::InvalidFile, main_path + ": the " + std::string(r.part) + " is missing (no tensor " +
                                              r.name + "): not a complete " + info.family + " checkpoint" +
                                              (any_part ? "; give it as a separate part" : ""));
  std::string merges = find_merges(explicit_m, options, opened);
  auto tokenizer = ClipTokenizer::from_merges(merges);
  // head counts are not in the tensor shapes: the family's values, or the values a (test) file records
  ModelConfig cfg;
  cfg.family = model_family_from_name(info.family);
  const auto& md = (unet ? unet : base)->metadata();
  auto md_int = [&](const char* key, int def) {
    auto it = md.find(key);
    if (it == md.end()) return def;
    int v = std::atoi(it->second.c_str());
    return v > 0 && v <= 1024 ? v : def;
  };
  cfg.clip_heads = md_int("sdnode.clip.heads", 0);
  cfg.unet_heads = md_int("sdnode.unet.heads", 0);
  cfg.unet_head_dim = md_int("sdnode.unet.head_dim", 64);
  // every tensor the networks use, against the architecture, before any of them is built: a broken file fails
  // here, naming the file the component comes from and the tensor
  {
    ModelShapeSpec spec;
    spec.family = info.family;
    spec.clip_heads = cfg.clip_heads;
    spec.unet_heads = cfg.unet_heads;
    spec.unet_head_dim = cfg.unet_head_dim;
    spec.tokenizer_vocab = tokenizer->vocab_size();
    spec.unet_file = main_path;
    spec.text_encoder_file = te ? parts.text_encoder : parts.file;
    spec.vae_file = vae ? parts.vae : parts.file;
    validate_model_shapes(*store, spec);
  }
  report(0.05f);
  if (wtype != DType::Invalid) {
    // progress 0.05 .. 0.95 over the U-Net (0.05 .. 0.8 when the text encoder is converted separately) and the text
    // encoder, monotonic
    const bool separate = placement.text_encoder_on_cpu;
    auto on_range = [&](float lo, float hi) {
      return [&options, lo, hi](int64_t d, int64_t t) {
        if (options.on_progress) return options.on_progress(lo + (hi - lo) * (float)d / (float)(t ? t : 1));
        return true;
      };
    };
    if (!separate) {
      convert_weights(*store, {"model.diffusion_model.", "cond_stage_model."}, wtype, on_range(0.05f, 0.95f));
    } else {
      convert_weights(*store, {"model.diffusion_model."}, wtype, on_range(0.05f, 0.8f));
      convert_weights(*cpu_store, {"cond_stage_model."}, wtype, on_range(0.8f, 0.95f));
    }
  }
  // Prediction type: the option always wins; then what the file declares (info.prediction from metadata or
  // marker tensors; SD1.x and SDXL default to eps); an SD 2.x file that declares nothing is probed.
  bool probe = false;
  if (!options.prediction.empty()) {
    info.prediction = options.prediction;
    info.prediction_source = "option";
  } else if (info.prediction.empty()) {
    probe = true;
  }
  Prediction pred = info.prediction == "v" ? Prediction::V : Prediction::Eps;
  std::unique_ptr<TaesdFile> taesd;
  if (!options.taesd_path.empty()) {
    if (!is_file(options.taesd_path))
      throw_error(ErrorCode::NotFound, "the TAESD file " + options.taesd_path +
                                           " does not exist (taesdPath / --taesd: give a taesd_decoder.safetensors or "
                                           "diffusers AutoencoderTiny file)");
    try {
      taesd = std::make_unique<TaesdFile>(options.taesd_path, *backend.backend);
    } catch (const Error& e) {
      throw Error(e.code(), std::string("taesdPath / --taesd: ") + e.what());
    }
    if (!taesd->model().has_decoder())
      throw_error(ErrorCode::InvalidFile, options.taesd_path + ": this TAESD file has no decoder (taesdPath / --taesd "
                                                               "needs taesd_decoder or a file with both halves)");
  }
  auto pipe = std::make_unique<DiffusionPipeline>(std::move(store), tokenizer, pred, cfg, placement, std::move(cpu_store));
  if (probe) {
    const bool v = DiffusionPipeline::probe_v_prediction(pipe->unet(), pipe->backend());
    info.prediction = v ? "v" : "eps";
    info.prediction_source = "probe";
    pipe->set_prediction(v ? Prediction::V : Prediction::Eps);
  }
  if (taesd) {
    if (taesd->model().latent_channels() != pipe->latent_channels())
      throw_error(ErrorCode::InvalidFile, options.taesd_path + ": this TAESD decoder takes " +
                                              std::to_string(taesd->model().latent_channels()) +
                                              "-channel latents but the model makes " +
                                              std::to_string(pipe->latent_channels()) +
                                              " (taesdPath / --taesd: use the TAESD of the model's family)");
    pipe->set_taesd(&taesd->model());
  }
  report(1.f);
  return std::make_unique<SdModel>(std::move(backend), std::move(owned), std::move(taesd), std::move(pipe), info);
}

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  ModelParts p;
  p.file = path;
  return load(p, options);
}

}  // namespace sdn
