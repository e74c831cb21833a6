// The SD1.x txt2img pipeline, usable with any WeightStore (a model file, or in-memory tiny weights in tests).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/weights.h"
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
  bool release_between_stages = true;  // drop CLIP pages after encoding and U-Net pages before decoding
  bool batch_cfg = true;               // run cond and uncond as one batch of 2 when their token counts agree
};

class Txt2ImgPipeline {
 public:
  Txt2ImgPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                  Prediction prediction = Prediction::Eps, ModelConfig config = {});
  WeightStore& store() { return *store_; }
  PipelineOptions& options() { return options_; }

  // Text conditioning of a prompt: [1, 77*chunks, D] (emphasis applied). Each distinct chunk is encoded once;
  // should_abort is polled between chunks (Error Aborted).
  Tensor encode_prompt(const std::string& prompt, int clip_skip, const std::function<bool()>& should_abort = {});
  // One denoiser evaluation with CFG (exposed for tests): x host latent [C*h*w].
  void denoise(const std::vector<float>& x, float sigma, int h, int w, std::vector<float>& out);

  // Test hook: the conditioning denoise() uses (uncond may be empty; cfg 1 = cond only; batched when shapes agree).
  void set_conditioning(const Tensor& cond, const Tensor& uncond, float cfg);

  std::vector<Image> generate(const GenerateParams& params, const GenerateCallbacks& callbacks);

  // Latent [C, h, w] -> RGB8 preview at latent size (SD1 latent-to-RGB linear approximation).
  static Image latent_preview(const std::vector<float>& latent, int h, int w);

 private:
  std::unique_ptr<WeightStore> store_;
  std::shared_ptr<ClipTokenizer> tokenizer_;
  Prediction prediction_;
  PipelineOptions options_;
  std::unique_ptr<ClipTextModel> clip_;
  std::unique_ptr<UNetModel> unet_;
  std::unique_ptr<VaeModel> vae_;
  std::unique_ptr<DiscreteSchedule> schedule_;
  // state of the current generate()
  Tensor cond_, uncond_, both_;
  float cfg_ = 1.f;
  UNetContextCache cache_cond_, cache_uncond_, cache_both_;
};

}  // namespace sdn
