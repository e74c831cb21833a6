// ControlNet (SD 1.x, SD 2.x, SDXL): a trainable copy of the U-Net encoder fed with a control image. Its outputs
// (one per U-Net input block plus one for the middle block, each through a 1x1 "zero convolution") are added to the
// U-Net's skip connections and middle output (UNetModel::forward's residuals argument). The encoder is a
// UNetModel built encoder-only, so an SDXL ControlNet gets SDXL's blocks for free: linear proj_in/out, transformer
// depth per level, no attention at level 0, and the vector conditioning y (pooled text embedding + size/crop
// embedding) through label_emb (diffusers: add_embedding), added to the time embedding as in the U-Net.
//
// Layouts, recognised from the names in the ControlNet's own WeightStore:
//  * lllyasviel: control_model.{time_embed, input_blocks, middle_block, input_hint_block.{0,2,..,14},
//    zero_convs.N.0, middle_block_out.0}
//  * diffusers: conv_in/down_blocks/mid_block/time_embedding (mapped by the file reader to
//    model.diffusion_model.input_blocks/...), controlnet_cond_embedding.{conv_in, blocks.0-5, conv_out},
//    controlnet_down_blocks.N, controlnet_mid_block (kept under model.diffusion_model.).
// The family is read from the structure as for models (label_emb or a 2048-wide context -> SDXL; else a 1024-wide
// context or linear proj_in -> SD 2.x; else SD 1.x). ControlNet-Union files (task/mode embeddings, extra
// transformer) are refused with Unsupported rather than run without those blocks.
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
  // heads/head_dim: the attention head rule of the U-Net it controls (see UNetModel).
  ControlNetModel(WeightStore& w, const std::string& what, int heads = 8, int head_dim = 64);

  int context_dim() const { return enc_->context_dim(); }
  int in_channels() const { return enc_->in_channels(); }
  int model_channels() const { return enc_->model_channels(); }
  // Width of the vector conditioning y it takes (SDXL: 2816), 0 when it has no label_emb / add_embedding.
  int adm_channels() const { return enc_->adm_channels(); }
  // "sd1", "sd2" or "sdxl", from the structure (see above).
  const std::string& family() const { return family_; }
  // Channels of residual i (as UNetModel::block_channels).
  int64_t block_channels(int i) const { return enc_->block_channels(i); }
  // "lllyasviel" or "diffusers"
  const std::string& layout() const { return layout_; }
  // Number of residuals forward() returns (U-Net input blocks + 1).
  int outputs() const { return enc_->input_blocks() + 1; }

  // Control image [1, 3, H, W] (values in [0, 1]) -> the hint features [1, C, H/8, W/8] (computed once per image).
  Tensor hint(const Tensor& image);
  // Residuals for UNetModel::forward, each multiplied by strength. x, t, context, y as for the U-Net (batch B; y
  // [B, adm_channels()] exactly when adm_channels() > 0); hint from hint() (batch 1, broadcast).
  std::vector<Tensor> forward(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                              const Tensor& hint, float strength, UNetContextCache* cache = nullptr,
                              const Tensor* y = nullptr);
  void release();
  void set_abort_check(std::function<bool()> fn) { enc_->set_abort_check(std::move(fn)); }

 private:
  WeightStore& w_;
  std::string p_, layout_, what_, family_;
  std::unique_ptr<UNetModel> enc_;
  std::vector<std::string> hint_convs_;  // 8 convolutions, SiLU between them; stride 2 at 2, 4, 6
  std::vector<std::string> zero_convs_;  // one per input block, then the middle block's
};

}  // namespace sdn
