// SD1.x / SD2.x / SDXL U-Net (LDM names under "model.diffusion_model."), following the original model definition:
// GroupNorm eps 1e-5 in ResBlocks and the output norm, 1e-6 in SpatialTransformer norms, exact-erf GEGLU.
// Attention heads: a fixed count (SD1.x: 8) or a fixed head size (SD2.x, SDXL: 64). proj_in/proj_out are 1x1
// convolutions (SD1.x) or Linear layers (SD2.x, SDXL), told apart by the weight's rank. SDXL's class/vector
// conditioning (label_emb, adm) adds label_emb(y) to the time embedding. The block layout (levels, channels,
// attention placement, transformer depth per block, levels without attention) is read from the tensor names and
// shapes, so tiny test models run too.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/weights.h"

namespace sdn {

// Cross-attention keys/values depend only on the text context: computed once per context and reused every step.
struct UNetContextCache {
  const void* context_data = nullptr;  // identity of the context the entries belong to
  std::map<std::string, std::pair<Tensor, Tensor>> kv;
  void clear() {
    kv.clear();
    context_data = nullptr;
  }
};

class UNetModel {
 public:
  // encoder_only: the input blocks and the middle block only (a ControlNet's copy of the U-Net encoder).
  // heads > 0: that many heads in every transformer (SD1.x: 8); otherwise head_dim channels per head (SD2.x,
  // SDXL: 64).
  explicit UNetModel(WeightStore& w, std::string prefix = "model.diffusion_model.", int heads = 8,
                     bool encoder_only = false, int head_dim = 64);

  int in_channels() const { return in_channels_; }
  int out_channels() const { return out_channels_; }
  int model_channels() const { return model_channels_; }
  int context_dim() const { return context_dim_; }
  // Width of the vector conditioning y (SDXL: 2816); 0 when the model has no label_emb.
  int adm_channels() const { return adm_channels_; }
  // Latent sizes must be multiples of this (2^number of downsamples).
  int size_multiple() const { return 1 << downsamples_; }

  // x [B, Cin, h, w]; t: B timesteps (fractional allowed); context [B, T, D] -> [B, Cout, h, w].
  // cache (optional) holds the cross-attention K/V for this context; it must be cleared when the context changes.
  // residuals (optional, ControlNet): one tensor per input block (added to that block's skip connection) and a
  // last one added to the middle block's output, already scaled by the control strength; batch 1 or B.
  // y [B, adm_channels()]: the vector conditioning, required exactly when the model has label_emb (SDXL).
  Tensor forward(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                 UNetContextCache* cache = nullptr, const std::vector<Tensor>* residuals = nullptr,
                 const Tensor* y = nullptr);
  // The encoder half: the hidden state after every input block, then the middle block's output
  // (input_blocks() + 1 tensors). hint (optional, ControlNet) is added after the first convolution.
  std::vector<Tensor> encoder_states(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                                     UNetContextCache* cache = nullptr, const Tensor* hint = nullptr,
                                     Tensor* emb_out = nullptr, const Tensor* y = nullptr);
  int input_blocks() const { return (int)input_.size(); }
  // Channels of input block i's output (i < input_blocks()), or of the middle block (i == input_blocks()).
  int64_t block_channels(int i) const;
  void release();
  // Polled between blocks during forward(); returning true throws Error(Aborted). Empty = never.
  void set_abort_check(std::function<bool()> fn) { abort_check_ = std::move(fn); }
  // When on, each block's memory-mapped weight pages are released right after the block ran (resident memory
  // ~ one block's weights instead of the whole U-Net; the pages come back from the OS page cache next step).
  void set_stream_weights(bool on) { stream_weights_ = on; }

 private:
  void poll_abort() const;
  void check_inputs(const Tensor& x, const std::vector<float>& t, const Tensor& context) const;
  Tensor time_embedding(const std::vector<float>& t, const Tensor* y);
  struct Block {
    enum Kind { ConvIn, Res, Down } kind = Res;
    std::string res, attn, up;  // prefixes ("" if absent)
  };
  Tensor resblock(const std::string& p, const Tensor& x, const Tensor& emb_silu);
  Tensor transformer(const std::string& p, const Tensor& x, const Tensor& context, UNetContextCache* cache);
  int heads_for(const std::string& p, int64_t channels) const;

  WeightStore& w_;
  std::string p_;
  int heads_, head_dim_;
  int adm_channels_ = 0;
  bool encoder_only_ = false;
  int in_channels_ = 0, out_channels_ = 0, model_channels_ = 0, context_dim_ = 0, downsamples_ = 0;
  std::vector<Block> input_, output_;
  std::string mid_res0_, mid_attn_, mid_res1_;
  std::function<bool()> abort_check_;
  bool stream_weights_ = false;
};

}  // namespace sdn
