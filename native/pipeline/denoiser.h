// The classifier-free-guidance denoiser shared by every task (txt2img, img2img, inpainting) and family: wraps the
// U-Net as the sampler's Denoiser D(x, sigma). One host round trip per evaluation: the latent goes up, the
// denoised latent comes back; input scaling, the CFG batch, CFG mixing and the c_skip/c_out combination run on the
// backend.
#pragma once
#include <vector>

#include "backends/backend.h"
#include "models/controlnet.h"
#include "models/unet.h"
#include "pipeline/conditioner.h"
#include "samplers/sampling.h"

namespace sdn {

struct DenoiserOptions {
  bool batch_cfg = true;  // run cond and uncond as one batch of 2 when their token counts agree
};

class CfgDenoiser {
 public:
  CfgDenoiser(Backend& be, UNetModel& unet, const DiscreteSchedule& schedule, Prediction prediction)
      : be_(be), unet_(unet), schedule_(schedule), prediction_(prediction) {}
  DenoiserOptions& options() { return options_; }

  // uncond may be undefined; cfg 1 = cond only; batched when the token counts agree (options().batch_cfg).
  void set_conditioning(const Conditioning& cond, const Conditioning& uncond, float cfg);
  // Channels appended to the scaled latent before the U-Net (inpainting checkpoints: mask and masked-image
  // latent), [1, k, h, w] on the backend; an undefined tensor removes them.
  void set_extra_channels(const Tensor& extra) { extra_ = extra; }
  // ControlNet guidance for the evaluations whose sigma lies in [sigma_lo, sigma_hi] (the steps between the
  // guidance start and end): its residuals, times strength, go into the U-Net. hint from ControlNetModel::hint().
  // Call after set_conditioning(); clear() removes it.
  void set_control(ControlNetModel* model, const Tensor& hint, float strength, float sigma_lo, float sigma_hi);
  // Drops the conditioning, the control and the cached cross-attention K/V.
  void clear();

  // den = D(x, sigma) for the host latent x [C*h*w] (C = latent channels).
  void denoise(const std::vector<float>& x, float sigma, int h, int w, std::vector<float>& den);

 private:
  Tensor unet_input(const Tensor& x_scaled) const;
  // U-Net output for one pass, with the control residuals when the control applies at this sigma.
  Tensor unet(const Tensor& xin, const std::vector<float>& t, const Tensor& context, UNetContextCache* cache,
              UNetContextCache* control_cache, float sigma,
              const Tensor* y = nullptr);

  Backend& be_;
  UNetModel& unet_;
  const DiscreteSchedule& schedule_;
  Prediction prediction_;
  DenoiserOptions options_;
  Conditioning cond_, uncond_, both_;
  Tensor extra_;
  float cfg_ = 1.f;
  UNetContextCache cache_cond_, cache_uncond_, cache_both_;
  ControlNetModel* control_ = nullptr;
  Tensor hint_;
  float control_strength_ = 1.f, control_lo_ = 0.f, control_hi_ = 0.f;
  UNetContextCache ccache_cond_, ccache_uncond_, ccache_both_;
};

}  // namespace sdn
