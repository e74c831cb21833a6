// The generation pipeline behind the public API, usable with any WeightStore (a model file, or in-memory tiny
// weights in tests): conditioning (Conditioner) -> per image: initial latent, sampling loop over the shared CFG
// denoiser -> VAE decode. Every task and family goes through this one loop.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/taesd.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/weights.h"
#include "pipeline/adapters.h"
#include "pipeline/conditioner.h"
#include "pipeline/denoiser.h"
#include "samplers/sampling.h"
#include "sdn/sdn.h"
#include "text/tokenizer.h"

namespace sdn {

// Architecture values not recorded in tensor shapes (from file metadata when present).
struct ModelConfig {
  ModelFamily family = ModelFamily::SD1;
  int clip_heads = 0;  // 0: width / 64
  int unet_heads = 0;  // 0: the family's rule (SD1.x: 8 heads; SD2.x/SDXL: heads of unet_head_dim channels)
  int unet_head_dim = 64;
};

enum class VaeTiling { Auto, On, Off };

// Where the components run: the U-Net always on the main store's backend; the text encoder and the VAE on the
// CPU store's backend when one is given and placement asks for it.
struct Placement {
  bool text_encoder_on_cpu = false;
  bool vae_on_cpu = false;
  VaeTiling vae_tiling = VaeTiling::Auto;
};

struct PipelineOptions {
  // Drop a component's prepared weights (and memory-mapped pages) after its stage: text encoder after encoding,
  // U-Net before decoding. Only for components on a host backend, where the pages come back from the page cache;
  // on a device the uploaded weights stay resident between generations.
  bool release_between_stages = true;
};

// One VAE encoder pass: image planes [3, h, w] in [-1, 1] -> moments [channels, h/8, w/8] (sets channels).
using RegionEncoder = std::function<std::vector<float>(const std::vector<float>& planes, int h, int w, int& channels)>;

// The moments of image planes px [3, H, W] (H, W multiples of 8) from `encode`, whole (tile = 0, or the image fits
// one tile) or in overlapping tiles of `tile` latent pixels sharing `overlap` latent pixels (at most half a tile):
// each tile is encoded on its own, the outer `margin` latent pixels of its sides that border another tile are
// dropped (weight 0) and the rest of the overlap is blended with linear ramps whose weights sum to 1.
std::vector<float> tiled_encode(const std::vector<float>& px, int H, int W, int tile, int overlap, int margin,
                                const RegionEncoder& encode, int* channels);

class DiffusionPipeline {
 public:
  // cpu_store: the same weights on a CPU backend, for components placed on the CPU (may be null).
  DiffusionPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                    Prediction prediction = Prediction::Eps, ModelConfig config = {}, Placement placement = {},
                    std::unique_ptr<WeightStore> cpu_store = nullptr);
  WeightStore& store() { return *store_; }
  Backend& backend() { return store_->backend(); }
  PipelineOptions& options() { return options_; }
  Conditioner& conditioner() { return *conditioner_; }
  CfgDenoiser& denoiser() { return *denoiser_; }

  std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks);
  UNetModel& unet() { return *unet_; }
  ModelFamily family() const { return family_; }
  Prediction prediction() const { return prediction_; }
  void set_prediction(Prediction p);
  // SD 2.x prediction probe (the rule of stable-diffusion.cpp and A1111 for checkpoints that declare nothing): the
  // U-Net once on x = 0.5 (an 8x8 latent), context = 0.5, t = 999; v-prediction when mean(output - x) < -1.
  static bool probe_v_prediction(UNetModel& unet, Backend& be);

  // Channels of the diffusion latent (what the sampler works on; an inpainting U-Net takes 5 more as input).
  int latent_channels() const { return unet_->out_channels(); }
  // The TAESD used by decoder = "taesd" and preview_method = "taesd" (not owned; null = none loaded).
  void set_taesd(TaesdModel* taesd) { taesd_ = taesd; }

  // Latent [C, h, w] -> RGB8 preview at latent size (SD1 latent-to-RGB linear approximation).
  static Image latent_preview(const std::vector<float>& latent, int h, int w);

 private:
  // Returns cached pool memory of every backend in use.
  void trim();
  // Model-specific checks of the parameters (sizes the U-Net can take, clip skip) before any work.
  void check_params(const GenerateParams& p) const;
  // The decoded image of latent x [C*h*w] (VAE on its backend, whole or in tiles; or TAESD on the model's backend
  // when `taesd`; one host copy of the pixels). Releases x.
  Image decode(std::vector<float>& x, int h, int w, const GenerateParams& p, bool taesd);
  // TAESD-decoded RGB planes [3, 8h, 8w] (about [0, 1]) of the diffusion latent x [C, h, w].
  std::vector<float> taesd_planes(const std::vector<float>& x, int h, int w);
  // An RGB8 image as host planes [3, H, W] in [-1, 1]; pixels where mask (grey [H*W] in [0, 1], may be null) is 1
  // become 0 (grey), as the masked image of inpainting checkpoints.
  static std::vector<float> image_planes(const Image& im, const std::vector<float>* mask);
  // VAE encode of planes [3, H, W] (on the VAE's backend, whole or in tiles, see tiles_encode()) + posterior sample
  // (mean + std * noise from `gen`, one randn of the whole latent's size) x scale factor: the diffusion latent
  // [C*h*w] on the host.
  std::vector<float> encode_latent(const std::vector<float>& px, int H, int W, NoiseGenerator& gen);
  // Whether a VAE pass over a latent of h x w tiles under the current placement (on: larger than a tile; auto: on a
  // device when the whole pass would not fit its memory, never on the host).
  bool tiles_vae(int h, int w) const;

 public:
  // Decoded RGB planes [3, 8h, 8w] (values in about [-1, 1]) of the latent x [C, h, w] (already divided by the
  // latent scale), in overlapping tiles of `tile` latent pixels (overlap `overlap`) blended with linear ramps;
  // tile = 0 decodes the whole latent at once. Exposed for the seam-error test.
  std::vector<float> decode_planes(const std::vector<float>& x, int h, int w, int tile, int overlap);
  // Whether decode / encode tile under the current placement and latent size (auto: the whole pass would not fit).
  bool tiles_decode(int h, int w) const { return tiles_vae(h, w); }
  bool tiles_encode(int h, int w) const { return tiles_vae(h, w); }
  // The VAE encoder's moments [mc, H/8, W/8] (mc = 2C: mean then log-variance; C for a mean-only encoder, given in
  // *channels) of image planes px [3, H, W] in [-1, 1], in overlapping tiles of `tile` latent pixels (8 * tile
  // image pixels) sharing `overlap` latent pixels: each tile is encoded on its own, the outer `margin` latent
  // pixels of its inner sides are dropped and the rest of the overlap is blended with linear ramps; tile = 0
  // encodes the whole image at once. Exposed for the seam-error test.
  std::vector<float> encode_planes(const std::vector<float>& px, int H, int W, int tile, int overlap, int margin,
                                   int* channels);

 private:
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<WeightStore> cpu_store_;  // declared after store_: destroyed first
  Placement placement_;
  Prediction prediction_;
  PipelineOptions options_;
  std::unique_ptr<Conditioner> conditioner_;
  std::unique_ptr<UNetModel> unet_;
  std::unique_ptr<VaeModel> vae_;
  Backend* vae_be_ = nullptr;  // the VAE's backend (the CPU when placed there)
  Backend* te_be_ = nullptr;   // the text encoder's backend
  bool releases(const Backend& be) const { return options_.release_between_stages && be.is_host(); }
  std::unique_ptr<DiscreteSchedule> schedule_;
  std::unique_ptr<CfgDenoiser> denoiser_;
  ModelFamily family_ = ModelFamily::SD1;
  TaesdModel* taesd_ = nullptr;
  float latent_scale_ = 0.18215f;  // VAE scale factor: SD 1.x/2.x 0.18215, SDXL 0.13025
  int stream_mode_ = -1;            // U-Net weight streaming: 1 always, 0 never, -1 auto (see the constructor)
  uint64_t unet_bytes_ = 0;         // bytes of the U-Net's weights as stored
  int unet_heads_ = 8;              // 0: heads of unet_head_dim_ channels (SD 2.x, SDXL)
  int unet_head_dim_ = 64;
  // adapters
  LoraState loras_;
  std::unique_ptr<LoadedControlNet> control_;
};

}  // namespace sdn
