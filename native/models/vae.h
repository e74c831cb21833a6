// SD VAE (LDM names under "first_stage_model."): decoder (latent -> image) and encoder (image -> latent
// moments). All GroupNorms eps 1e-6; the mid-block attention is single-head. Levels and channels come from the
// tensors.
#pragma once
#include <functional>
#include <string>

#include "models/weights.h"

namespace sdn {

class VaeModel {
 public:
  explicit VaeModel(WeightStore& w, std::string prefix = "first_stage_model.");

  int latent_channels() const { return latent_channels_; }
  // z [B, zc, h, w] (already divided by the scale factor) -> image [B, 3, 8h, 8w] in about [-1, 1].
  Tensor decode(const Tensor& z);
  // image [B, 3, H, W] in [-1, 1] -> moments [B, 2*zc, H/8, W/8] (mean, logvar) after quant_conv.
  Tensor encode(const Tensor& image);
  void release_decoder();
  void release_encoder();
  // Polled between blocks; returning true throws Error(Aborted). Empty = never.
  void set_abort_check(std::function<bool()> fn) { abort_check_ = std::move(fn); }

 private:
  Tensor resnet(const std::string& p, const Tensor& x);
  Tensor attn(const std::string& p, const Tensor& x);

  WeightStore& w_;
  std::string p_;
  int latent_channels_ = 4;
  std::function<bool()> abort_check_;
};

}  // namespace sdn
