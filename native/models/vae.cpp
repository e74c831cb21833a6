#include "models/vae.h"

#include "models/blocks.h"
#include "sdn/error.h"

namespace sdn {

static constexpr float kVaeEps = 1e-6f;

VaeModel::VaeModel(WeightStore& w, std::string prefix) : w_(w), p_(std::move(prefix)) {
  if (w_.has(p_ + "post_quant_conv.weight")) latent_channels_ = (int)w_.raw(p_ + "post_quant_conv.weight").shape[0];
}

Tensor VaeModel::resnet(const std::string& p, const Tensor& x) {
  if (abort_check_ && abort_check_()) throw_error(ErrorCode::Aborted, "generation was aborted");
  Backend& be = w_.backend();
  Tensor h = group_norm(w_, p + "norm1", x, kVaeEps, true);
  h = conv(w_, p + "conv1", h, 1, 1);
  h = group_norm(w_, p + "norm2", h, kVaeEps, true);
  h = conv(w_, p + "conv2", h, 1, 1);
  if (w_.has(p + "nin_shortcut.weight")) {
    Tensor s = conv(w_, p + "nin_shortcut", x, 1, 0);
    be.add_(h, s);
  } else {
    be.add_(h, x);
  }
  return h;
}

Tensor VaeModel::attn(const std::string& p, const Tensor& x) {
  Backend& be = w_.backend();
  const int64_t H = x.shape[2], W = x.shape[3];
  Tensor h = group_norm(w_, p + "norm", x, kVaeEps, false);
  Tensor q = be.nchw_to_nlc(conv(w_, p + "q", h, 1, 0));
  Tensor k = be.nchw_to_nlc(conv(w_, p + "k", h, 1, 0));
  Tensor v = be.nchw_to_nlc(conv(w_, p + "v", h, 1, 0));
  h = Tensor();
  Tensor a = be.attention(q, k, v, 1, false);
  q = k = v = Tensor();
  a = be.nlc_to_nchw(a, H, W);
  Tensor o = conv(w_, p + "proj_out", a, 1, 0);
  be.add_(o, x);
  return o;
}

Tensor VaeModel::decode(const Tensor& z) {
  Backend& be = w_.backend();
  if (z.ndim != 4 || z.shape[1] != latent_channels_)
    throw_error(ErrorCode::InvalidArgument, "VAE decoder input must be [B, " + std::to_string(latent_channels_) +
                                                ", h, w], got " + z.shape_str());
  const std::string d = p_ + "decoder.";
  Tensor h = z;
  if (w_.has(p_ + "post_quant_conv.weight")) h = conv(w_, p_ + "post_quant_conv", h, 1, 0);
  h = conv(w_, d + "conv_in", h, 1, 1);
  h = resnet(d + "mid.block_1.", h);
  if (w_.has(d + "mid.attn_1.q.weight")) h = attn(d + "mid.attn_1.", h);
  h = resnet(d + "mid.block_2.", h);
  dump("vae.dec.mid", h);
  int levels = count_indexed(w_, d + "up.", ".block.0.conv1.weight");
  for (int i = levels - 1; i >= 0; --i) {
    std::string up = d + "up." + std::to_string(i) + ".";
    int blocks = count_indexed(w_, up + "block.", ".conv1.weight");
    for (int j = 0; j < blocks; ++j) h = resnet(up + "block." + std::to_string(j) + ".", h);
    if (w_.has(up + "upsample.conv.weight")) {
      h = be.upsample_nearest2x(h);
      h = conv(w_, up + "upsample.conv", h, 1, 1);
    }
    if (dump_enabled()) dump("vae.dec.up" + std::to_string(i), h);
    // every level works at 4x the pixels of the previous one: blocks cached by the activation pool at the smaller
    // sizes would never be reused, so give them back (keeps the decoder's peak memory at one level's working set)
    be.trim();
  }
  h = group_norm(w_, d + "norm_out", h, kVaeEps, true);
  h = conv(w_, d + "conv_out", h, 1, 1);
  dump("vae.dec.out", h);
  return h;
}

Tensor VaeModel::encode(const Tensor& image) {
  Backend& be = w_.backend();
  if (image.ndim != 4 || image.shape[1] != 3)
    throw_error(ErrorCode::InvalidArgument, "VAE encoder input must be [B, 3, H, W], got " + image.shape_str());
  const std::string e = p_ + "encoder.";
  int levels = count_indexed(w_, e + "down.", ".block.0.conv1.weight");
  int64_t m = 1;
  for (int i = 0; i < levels; ++i)
    if (w_.has(e + "down." + std::to_string(i) + ".downsample.conv.weight")) m *= 2;
  if (image.shape[2] % m || image.shape[3] % m)
    throw_error(ErrorCode::InvalidArgument, "VAE encoder: image size must be a multiple of " + std::to_string(m));
  Tensor h = conv(w_, e + "conv_in", image, 1, 1);
  for (int i = 0; i < levels; ++i) {
    std::string dn = e + "down." + std::to_string(i) + ".";
    int blocks = count_indexed(w_, dn + "block.", ".conv1.weight");
    for (int j = 0; j < blocks; ++j) h = resnet(dn + "block." + std::to_string(j) + ".", h);
    if (w_.has(dn + "downsample.conv.weight")) {
      h = be.pad(h, 0, 1, 0, 1);  // one zero column on the right, one row at the bottom
      h = conv(w_, dn + "downsample.conv", h, 2, 0);
    }
  }
  h = resnet(e + "mid.block_1.", h);
  if (w_.has(e + "mid.attn_1.q.weight")) h = attn(e + "mid.attn_1.", h);
  h = resnet(e + "mid.block_2.", h);
  h = group_norm(w_, e + "norm_out", h, kVaeEps, true);
  h = conv(w_, e + "conv_out", h, 1, 1);
  if (w_.has(p_ + "quant_conv.weight")) h = conv(w_, p_ + "quant_conv", h, 1, 0);
  return h;
}

void VaeModel::release_decoder() {
  w_.release(p_ + "decoder.");
  w_.release(p_ + "post_quant_conv.");
}
void VaeModel::release_encoder() {
  w_.release(p_ + "encoder.");
  w_.release(p_ + "quant_conv.");
}

}  // namespace sdn
