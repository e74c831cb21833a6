// ControlNet (SD 1.x/2.x; SDXL in diffusers layout where the U-Net supports SDXL): a trainable copy of the U-Net
// encoder fed with a control image. Its outputs (one per U-Net input block plus one for the middle block, each
// through a 1x1 "zero convolution") are added to the U-Net's skip connections and middle output
// (UNetModel::forward's residuals argument).
//
// Layouts, recognised from the names in the ControlNet's own WeightStore:
//  * lllyasviel: control_model.{time_embed, input_blocks, middle_block, input_hint_block.{0,2,..,14},
//    zero_convs.N.0, middle_block_out.0}
//  * diffusers: conv_in/down_blocks/mid_block/time_embedding (mapped by the file reader to
//    model.diffusion_model.input_blocks/...), controlnet_cond_embedding.{conv_in, blocks.0-5, conv_out},
//    controlnet_down_blocks.N, controlnet_mid_block (kept under model.diffusion_model.).
// The control image is used as given (RGB in [0, 1], the target size): edge, depth or pose maps are made by the
// caller.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/unet.h"
#include "models/weights.h"

namespace sdn {

class ControlNetModel {
 public:
  // Throws InvalidFile naming `what` (the file) when the layout is not a ControlNet.
  ControlNetModel(WeightStore& w, const std::string& what, int heads = 8);

  int context_dim() const { return enc_->context_dim(); }
  int in_channels() const { return enc_->in_channels(); }
  int model_channels() const { return enc_->model_channels(); }
  // "lllyasviel" or "diffusers"
  const std::string& layout() const { return layout_; }
  // Number of residuals forward() returns (U-Net input blocks + 1).
  int outputs() const { return enc_->input_blocks() + 1; }

  // Control image [1, 3, H, W] (values in [0, 1]) -> the hint features [1, C, H/8, W/8] (computed once per image).
  Tensor hint(const Tensor& image);
  // Residuals for UNetModel::forward, each multiplied by strength. x, t, context as for the U-Net (batch B);
  // hint from hint() (batch 1, broadcast).
  std::vector<Tensor> forward(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                              const Tensor& hint, float strength, UNetContextCache* cache = nullptr);
  void release();
  void set_abort_check(std::function<bool()> fn) { enc_->set_abort_check(std::move(fn)); }

 private:
  WeightStore& w_;
  std::string p_, layout_, what_;
  std::unique_ptr<UNetModel> enc_;
  std::vector<std::string> hint_convs_;  // 8 convolutions, SiLU between them; stride 2 at 2, 4, 6
  std::vector<std::string> zero_convs_;  // one per input block, then the middle block's
};

}  // namespace sdn
