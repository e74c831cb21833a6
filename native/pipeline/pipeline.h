// The generation pipeline behind the public API, usable with any WeightStore (a model file, or in-memory tiny
// weights in tests): conditioning (Conditioner) -> per image: initial latent, sampling loop over the shared CFG
// denoiser -> VAE decode. Every task and family goes through this one loop.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/unet.h"
#include "models/vae.h"
#include "models/weights.h"
#include "pipeline/conditioner.h"
#include "pipeline/denoiser.h"
#include "samplers/sampling.h"
#include "sdn/sdn.h"
#include "text/tokenizer.h"

namespace sdn {

// Architecture values not recorded in tensor shapes (from file metadata when present).
struct ModelConfig {
  int clip_heads = 0;  // 0: width / 64
  int unet_heads = 8;  // SD1.x: 8
};

struct PipelineOptions {
  bool release_between_stages = true;  // drop text-encoder pages after encoding and U-Net pages before decoding
};

class DiffusionPipeline {
 public:
  DiffusionPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                    Prediction prediction = Prediction::Eps, ModelConfig config = {});
  WeightStore& store() { return *store_; }
  Backend& backend() { return store_->backend(); }
  PipelineOptions& options() { return options_; }
  Conditioner& conditioner() { return *conditioner_; }
  CfgDenoiser& denoiser() { return *denoiser_; }

  std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks);

  // Latent [C, h, w] -> RGB8 preview at latent size (SD1 latent-to-RGB linear approximation).
  static Image latent_preview(const std::vector<float>& latent, int h, int w);

 private:
  // Model-specific checks of the parameters (sizes the U-Net can take, clip skip) before any work.
  void check_params(const GenerateParams& p) const;
  // The decoded image of latent x [C*h*w] (VAE on the backend, one host copy of the pixels).
  Image decode(std::vector<float>& x, int h, int w, const GenerateParams& p);

  std::unique_ptr<WeightStore> store_;
  Prediction prediction_;
  PipelineOptions options_;
  std::unique_ptr<Conditioner> conditioner_;
  std::unique_ptr<UNetModel> unet_;
  std::unique_ptr<VaeModel> vae_;
  std::unique_ptr<DiscreteSchedule> schedule_;
  std::unique_ptr<CfgDenoiser> denoiser_;
  float latent_scale_ = 0.18215f;  // SD 1.x/2.x VAE scale factor
};

}  // namespace sdn
