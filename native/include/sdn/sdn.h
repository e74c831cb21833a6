// sdnode engine: public C++ API (no Node dependency). The N-API addon, the native CLI and the bench tool are
// written against this header only.
//
// Usage sketch:
//   sdn::LoadOptions lo;                                  // defaults: all cores, weights as stored
//   auto model = sdn::Model::load("model.safetensors", lo);
//   sdn::GenerateParams p; p.prompt = "a red fox in the snow"; p.width = p.height = 512;
//   std::vector<sdn::Image> images = model->generate(p, {});
//
// Thread-safety: a Model may be used from one thread at a time (the Node layer queues calls per model). Different
// Models may run concurrently; they share the process-wide CPU thread pool, whose regions are serialised.
// Errors: every function throws sdn::Error (sdn/error.h) with a code and a message that says what to do.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sdn/error.h"

namespace sdn {

constexpr const char* kEngineVersion = "0.1.0";

// A compute device one of the compiled-in backends can run on.
struct DeviceInfo {
  std::string id;            // "cpu", "vulkan:0", ... (what LoadOptions::device takes)
  std::string backend;       // "cpu", "vulkan", ...
  int index = 0;             // device index within the backend
  std::string name;          // "AMD EPYC 9B45", "NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)"
  std::string vendor;        // "AMD", "NVIDIA", "Intel", "Apple", "Mesa", ...
  std::string driver;        // driver name and version where known
  std::string type;          // "cpu", "discrete", "integrated", "virtual", "software"
  uint64_t memory_bytes = 0; // device-local memory (installed RAM for the CPU)
  bool fp16 = false;         // 16-bit float arithmetic in kernels
  bool int8 = false;         // 8-bit integer arithmetic in kernels
  bool cooperative_matrix = false;  // tensor-core style matrix instructions
  // whether sdnode's cooperative-matrix GEMM kernel runs on it, and why not: "not used: <reason>", "candidate: ..."
  // (before a model loads; a self-check decides then), "in use: ..." (a loaded model's device after the self-check)
  std::string cooperative_matrix_kernel;
  std::string kernels;       // kernel variants a backend instance uses (Backend::device_info() only; "" elsewhere)
  bool usable = true;
  std::string unusable_reason;      // why not, when !usable
};

struct SystemInfo {
  std::string version;               // engine version
  std::string simd;                  // SIMD level in use: "avx512", "avx2", "neon", "scalar"
  int threads = 1;                   // threads of the process-wide CPU pool (models may have their own)
  int physical_cores = 1;
  std::vector<std::string> backends; // compiled-in backends ("cpu", "vulkan", ...)
  std::vector<DeviceInfo> devices;   // every device of every compiled-in backend, the CPU first
  std::vector<std::string> backend_notes;  // why a compiled-in backend has no devices ("vulkan: no loader ...")
};
SystemInfo system_info();

// Whether a device works: creates the backend for `spec` ("cpu", "vulkan:0", ...) and checks a small matrix product
// against the host. Device failures come back as ok = false with the reason (never thrown); a driver that crashes
// crashes the caller, so the Node package runs this in a short-lived child process.
struct DeviceProbe {
  bool ok = false;
  std::string device;  // the device it resolved to ("vulkan:0")
  std::string name;    // device name and driver as the backend reports them
  std::string driver;
  std::string reason;  // why not, when !ok
};
DeviceProbe probe_device(const std::string& spec);
// Names of the compiled-in backends ("cpu", "vulkan", ...) without enumerating devices: no GPU runtime is loaded.
std::vector<std::string> compiled_backends();
// Sets the thread count of the process-wide CPU pool (<= 0: physical cores; at most max_threads()); models loaded with
// LoadOptions::threads > 0 use their own pool instead.
void set_threads(int n);
// The most CPU threads the engine accepts: the machine's hardware threads (logical cores). More only
// oversubscribes the cores: every thread gets slower (measured: 256 threads on 2 cores, 20x slower).
int max_threads();
// InvalidArgument when threads > max_threads() (LoadOptions.threads; <= 0 means "keep the process setting").
void validate_threads(int threads);

// ----------------------------------------------------------------------------------------------------------
// Model files
// ----------------------------------------------------------------------------------------------------------

// What a file or folder holds, as recognised from tensor names and shapes.
struct ModelInfo {
  std::string path;
  std::string format;            // "safetensors", "gguf", "diffusers", "ckpt" (PyTorch zip checkpoint)
  std::string family;            // "sd1", "sd2", "sdxl", "unknown"
  std::string variant;           // "base", "inpaint", ... ("" if unknown)
  std::string prediction;        // "eps", "v", or "" when not declared (inspect) / not decided
  // How `prediction` was decided: "file" (declared by metadata or a marker tensor), "family" (SD1.x and SDXL
  // default to eps), after Model::load also "option" (LoadOptions::prediction) or "probe" (SD2.x checkpoints
  // that declare nothing: the U-Net run once on constant inputs, stable-diffusion.cpp's and A1111's rule).
  std::string prediction_source;
  bool runnable = false;         // this engine can generate with it today
  std::string not_runnable_reason;
  int64_t tensor_count = 0;
  int64_t parameter_count = 0;
  int64_t size_bytes = 0;        // bytes of tensor data
  std::map<std::string, int64_t> tensors_by_type;  // dtype name -> count
  // selected key-values (GGUF kv / safetensors __metadata__): at most 256 keys (cut at 256 bytes), values cut at
  // 1024 bytes; when more exist, key kMetadataOmittedKey says how many were left out
  std::map<std::string, std::string> metadata;
  bool has_tokenizer = false;    // merges embedded or found next to the model
  int size_multiple = 0;         // width/height must be multiples of this: 8 x 2^(U-Net downsamplings); 0 = unknown
};

// Reads headers only (no tensor data). Throws NotFound / InvalidFile with the file and the problem named.
ModelInfo inspect_model(const std::string& path);

struct ConvertOptions {
  std::string type = "f16";        // weight type for large weights: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K
  std::string vae_type = "f16";    // type for first_stage_model.* weights
  std::string tokenizer_path;      // merges file to embed ("" = from the model / diffusers folder if present)
  // Merges text used when neither tokenizer_path nor the model has merges (the Node package passes its shipped CLIP
  // table here), so that the GGUF written is self-contained.
  std::string fallback_merges;
  // Progress: (tensors done, tensors total). Return false to abort (Error Aborted, partial output removed).
  std::function<bool(int64_t, int64_t)> on_progress;
};

struct ConvertSummary {
  int64_t tensor_count = 0;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
  std::map<std::string, int64_t> tensors_by_type;  // output dtype name -> count
};

// Writes a GGUF file with the names stable-diffusion.cpp uses (LDM names), metadata and, if known, merges.
ConvertSummary convert_model(const std::string& input, const std::string& output, const ConvertOptions& options);

// ----------------------------------------------------------------------------------------------------------
// Generation
// ----------------------------------------------------------------------------------------------------------

struct ModelParts {
  std::string file;          // single file or diffusers folder; or leave empty and give the parts below
  std::string unet, vae, text_encoder, tokenizer;
};

constexpr const char* kMetadataOmittedKey = "sdnode.metadata_omitted";

struct LoadOptions {
  // Where to run: "auto" (the best usable GPU, else the CPU), "cpu", "vulkan", "vulkan:N". An explicit device
  // that is missing or unusable fails with Unsupported; "auto" falls back to the CPU and says why (device()).
  std::string device = "auto";
  uint64_t vram_budget = 0;        // bytes of device memory for weights (0 = no limit)
  // Run the text encoder / the VAE on the CPU while the U-Net runs on `device` (saves device memory; no effect when
  // the device is the CPU).
  bool text_encoder_on_cpu = false;
  bool vae_on_cpu = false;
  // VAE decode and encode in overlapping tiles: "auto" (on a device, when the whole image would not fit its memory),
  // "on", "off".
  std::string vae_tiling = "auto";
  int threads = 0;                 // CPU threads for this model (<= 0: the process-wide pool); <= max_threads()
  std::string weight_type;         // "" = as stored; otherwise quantize/convert on load (same names as convert)
  std::string tokenizer_path;      // explicit merges file (overrides embedded/folder ones)
  std::string prediction;          // "" = from the file (or detected); "eps" / "v" forces it
  // Merges text used last, when no explicit, embedded, next-to-the-model or per-user cached merges are found (the
  // Node package passes its shipped CLIP table here).
  std::string fallback_merges;
  // A TAESD / TAESDXL file (tiny autoencoder, e.g. taesd_decoder.safetensors or diffusers AutoencoderTiny
  // weights): needed by GenerateParams::decoder = "taesd" and preview_method = "taesd". Checked at load time.
  std::string taesd_path;
  // Loading progress in [0, 1]; return false to abort (Error Aborted).
  std::function<bool(float)> on_progress;
};

// An 8-bit image, row-major, channels interleaved (results are RGB; inputs may also be 1-channel grey).
struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> data;       // width * height * channels bytes
  int64_t seed = 0;
  // Results only: what the adapters did (LoRA tensors that matched nothing in the model) and the memory they added.
  std::vector<std::string> warnings;
  uint64_t adapter_bytes = 0;      // bytes of merged LoRA weights held by the model (beyond the model file)
};

// A LoRA given by path (in addition to <lora:NAME:WEIGHT> in the prompt).
struct LoraSpec {
  std::string path;
  float weight = 1.0f;
};

// ControlNet guidance: a ControlNet file and its control image (an edge/depth/pose map made by the caller; used
// as given, RGB, the generation's width x height).
struct ControlNetSpec {
  std::string model;               // ControlNet file ("" = none)
  int image_width = 0, image_height = 0;
  std::vector<uint8_t> image_rgb;  // RGB8, row-major, image_width x image_height
  float strength = 1.0f;           // multiplier of the residuals, >= 0
  float start = 0.0f, end = 1.0f;  // fraction of the steps where it applies (A1111 guidance start/end)
};

struct GenerateParams {
  std::string prompt;
  std::string negative_prompt;
  int width = 512;                 // multiple of 8
  int height = 512;                // multiple of 8
  int steps = 20;
  float cfg_scale = 7.0f;
  std::string sampler = "euler_a"; // euler euler_a heun dpm2 dpm++2m dpm++2s_a lcm ddim ddim_trailing ipndm tcd
  std::string scheduler = "discrete";  // discrete karras exponential simple sgm_uniform lcm ays
  int64_t seed = -1;               // < 0: random (the seed used is reported in Image::seed)
  std::string rng = "cuda";        // "cuda"/"philox" (A1111 GPU noise) or "cpu" (MT19937, ComfyUI)
  int clip_skip = 0;               // 0 = the model's default (SD1 1; SD2, SDXL 2); 1 = last layer, 2 = the one before
  int batch_count = 1;             // images, seeds seed, seed+1, ...
  int preview_every = 0;           // 0 = no previews; N = a preview every N steps
  std::string preview_method = "latent";  // "latent" (linear latent->RGB, latent size) or "taesd" (needs taesd_path)

  // Image-to-image and inpainting. An empty init_image means txt2img.
  Image init_image;                // RGB (3 channels) of exactly width x height (the Node layer resizes)
  // Inpainting mask (needs init_image): 1 or 3 channels (the first is used), width x height; 255 = repaint,
  // 0 = keep, grey values repaint partially. Inpainting checkpoints get it as their extra U-Net input; with any
  // checkpoint the latent outside the mask is reset to the init image's after every denoising step.
  Image mask;
  // Fraction of the schedule that runs from the init image, in [0, 1] (as stable-diffusion.cpp: of N steps,
  // t = floor(N * strength) (N - 1 when that is N), and the last t + 1 sigmas run). 1 with a mask = all steps.
  float strength = 0.75f;
  std::string decoder = "vae";     // "vae" or "taesd" (the tiny autoencoder of LoadOptions::taesd_path)
  // Adapters. LoRAs: `loras` plus every <lora:NAME:WEIGHT> of the prompt (NAME.safetensors/.ckpt/.pt in lora_dir;
  // the tags are removed from the prompt text). Switching LoRAs between generations re-merges only the affected
  // weights; an empty list returns the model to its own weights.
  std::vector<LoraSpec> loras;
  std::string lora_dir;
  // Textual-inversion embeddings (A1111/ComfyUI .pt/.safetensors) used by name in prompts: a word equal to a file
  // name (without extension) in embedding_dir, or "embedding:NAME" (then NAME must exist).
  std::string embedding_dir;
  ControlNetSpec control_net;
};

enum class Phase { Encode, Sample, Decode };

struct Progress {
  Phase phase = Phase::Encode;
  int step = 0;                    // steps done in this phase
  int steps = 0;                   // steps in this phase
  int image = 0;                   // index in the batch
  int images = 1;
};


struct GenerateCallbacks {
  std::function<void(const Progress&)> on_progress;
  std::function<void(int step, const Image&)> on_preview;  // cheap latent->RGB approximation
  // Polled at least once per denoising step and between phases; returning true aborts (Error Aborted).
  std::function<bool()> should_abort;
};

class Model {
 public:
  virtual ~Model() = default;
  // Opens a single file or a diffusers folder (or parts). Weights are memory-mapped where possible.
  static std::unique_ptr<Model> load(const ModelParts& parts, const LoadOptions& options);
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options);

  virtual const ModelInfo& info() const = 0;
  // The device the model runs on and, for "auto", why: "vulkan:0 NVIDIA H200, 139 GiB", "cpu: no Vulkan loader".
  virtual std::string device() const = 0;
  // Memory of the model's device (for the CPU: its activation pool): activations in use and their peak, and the
  // weights resident on the device now. Benchmarks read it.
  struct MemoryUse {
    uint64_t activations = 0, peak_activations = 0, weights = 0;
    // vramBudget weight streaming (zero without a budget): device memory for weights at its peak (resident weights +
    // the streaming area), the streaming area, weights kept in host memory, bytes streamed so far (cumulative).
    uint64_t peak_weights = 0, stream_area = 0, host_weights = 0, streamed = 0;
  };
  virtual MemoryUse memory_use() const { return {}; }
  // Validates params (InvalidArgument naming the parameter) before any work, then runs txt2img.
  virtual std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks) = 0;
};

// Validates generation parameters without a model (the same checks generate() runs first).
void validate_params(const GenerateParams& params);

}  // namespace sdn
