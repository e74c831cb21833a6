#include "models/controlnet.h"

#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

ControlNetModel::ControlNetModel(WeightStore& w, const std::string& what, int heads, int head_dim)
    : w_(w), what_(what) {
  if (w_.has("control_model.input_hint_block.0.weight")) {
    layout_ = "lllyasviel";
    p_ = "control_model.";
    for (int k = 0; k < 8; ++k) hint_convs_.push_back(p_ + "input_hint_block." + std::to_string(2 * k));
  } else if (w_.has("model.diffusion_model.controlnet_cond_embedding.conv_in.weight")) {
    layout_ = "diffusers";
    p_ = "model.diffusion_model.";
    const std::string e = p_ + "controlnet_cond_embedding.";
    hint_convs_.push_back(e + "conv_in");
    for (int k = 0; k < 6; ++k) hint_convs_.push_back(e + "blocks." + std::to_string(k));
    hint_convs_.push_back(e + "conv_out");
  } else {
    throw_error(ErrorCode::InvalidFile,
                what + ": not a ControlNet (no control_model.input_hint_block.* or controlnet_cond_embedding.* "
                       "tensors): give a ControlNet file as controlNet.model (CLI --control-net)");
  }
  // variants with blocks this model does not have: refused, not run without them
  for (const char* v : {"task_embedding", "controlnet_mode_embedding.weight", "transformer_layes.0.attn.in_proj_weight",
                        "spatial_ch_projs.weight"})
    if (w_.has(p_ + v))
      throw_error(ErrorCode::Unsupported, what + ": a ControlNet-Union (ProMax) file (" + v +
                                              "): only plain ControlNets are supported; use a single-condition "
                                              "ControlNet as controlNet.model (CLI --control-net)");
  for (const auto& c : hint_convs_)
    if (!w_.has(c + ".weight"))
      throw_error(ErrorCode::InvalidFile, what + ": the ControlNet's hint encoder is incomplete (no " + c +
                                              ".weight)");
  try {
    enc_ = std::make_unique<UNetModel>(w_, p_, heads, /*encoder_only=*/true, head_dim);
  } catch (const Error& e) {
    throw_error(e.code(), what + ": ControlNet: " + e.what());
  }
  {
    // family from the structure, as the model files are detected (by structure, so tiny test files are too)
    bool linear_proj = false;
    for (const std::string& n : w_.names_with_prefix(p_ + "input_blocks."))
      if (n.size() > 15 && n.compare(n.size() - 15, 15, ".proj_in.weight") == 0) {
        linear_proj = w_.raw(n).ndim == 2;
        break;
      }
    const int ctx = enc_->context_dim();
    family_ = (enc_->adm_channels() > 0 || ctx == 2048) ? "sdxl" : (ctx == 1024 || linear_proj) ? "sd2" : "sd1";
  }
  for (int i = 0; i < enc_->input_blocks(); ++i)
    zero_convs_.push_back(layout_ == "lllyasviel" ? p_ + "zero_convs." + std::to_string(i) + ".0"
                                                  : p_ + "controlnet_down_blocks." + std::to_string(i));
  zero_convs_.push_back(layout_ == "lllyasviel" ? p_ + "middle_block_out.0" : p_ + "controlnet_mid_block");
  for (size_t i = 0; i < zero_convs_.size(); ++i) {
    const std::string n = zero_convs_[i] + ".weight";
    if (!w_.has(n)) throw_error(ErrorCode::InvalidFile, what + ": the ControlNet has no " + n);
    const Tensor& z = w_.raw(n);
    if (z.ndim != 4 || z.shape[0] != enc_->block_channels((int)i) || z.shape[1] != enc_->block_channels((int)i))
      throw_error(ErrorCode::InvalidFile, what + ": " + n + " " + z.shape_str() + " does not fit the block's " +
                                              std::to_string(enc_->block_channels((int)i)) + " channels");
  }
  const Tensor& last = w_.raw(hint_convs_.back() + ".weight");
  if (last.ndim != 4 || last.shape[0] != enc_->block_channels(0))
    throw_error(ErrorCode::InvalidFile, what + ": the hint encoder's output " + last.shape_str() +
                                            " does not match the first block's channels");
}

Tensor ControlNetModel::hint(const Tensor& image) {
  Backend& be = w_.backend();
  if (image.ndim != 4 || image.shape[1] != 3)
    throw_error(ErrorCode::InvalidArgument, "control image must be RGB [1, 3, H, W], got " + image.shape_str());
  Tensor h = image;
  for (size_t k = 0; k < hint_convs_.size(); ++k) {
    const int stride = (k == 2 || k == 4 || k == 6) ? 2 : 1;
    h = conv(w_, hint_convs_[k], h, stride, 1);
    if (k + 1 < hint_convs_.size()) h = be.unary(UnaryOp::Silu, h);
  }
  dump("control.hint", h);
  return h;
}

std::vector<Tensor> ControlNetModel::forward(const Tensor& x, const std::vector<float>& t, const Tensor& context,
                                             const Tensor& hint, float strength, UNetContextCache* cache,
                                             const Tensor* y) {
  Backend& be = w_.backend();
  std::vector<Tensor> states = enc_->encoder_states(x, t, context, cache, &hint, nullptr, y);
  std::vector<Tensor> out;
  out.reserve(states.size());
  for (size_t i = 0; i < states.size(); ++i) {
    Tensor r = conv(w_, zero_convs_[i], states[i], 1, 0);
    states[i] = Tensor();
    if (strength != 1.0f) r = be.scale(r, strength);
    if (dump_enabled()) dump("control.out" + std::to_string(i), r);
    out.push_back(std::move(r));
  }
  return out;
}

void ControlNetModel::release() { w_.release(p_); }

}  // namespace sdn
