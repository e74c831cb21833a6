#include "models/taesd.h"

#include "formats/weight_file.h"
#include "models/blocks.h"
#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

namespace {
// Decoder Sequential (diffusers indices): 0 conv, 1 ReLU, 2-4 Blocks, 5 Upsample, 6 conv, 7-9 Blocks, 10 Upsample,
// 11 conv, 12-14 Blocks, 15 Upsample, 16 conv, 17 Block, 18 conv.
constexpr int kDecConvs[] = {0, 6, 11, 16, 18};
constexpr int kDecBlocks[] = {2, 3, 4, 7, 8, 9, 12, 13, 14, 17};
// Encoder Sequential: 0 conv, 1 Block, 2 conv/2, 3-5 Blocks, 6 conv/2, 7-9 Blocks, 10 conv/2, 11-13 Blocks, 14 conv.
constexpr int kEncConvs[] = {0, 2, 6, 10, 14};
constexpr int kEncBlocks[] = {1, 3, 4, 5, 7, 8, 9, 11, 12, 13};
}  // namespace

std::string TaesdModel::layer(const std::string& base, int index, int shift) const {
  return base + std::to_string(index + shift);
}

TaesdModel::TaesdModel(WeightStore& w, const std::string& what) : w_(w), what_(what) {
  for (const char* p : {"", "taesd.", "vae.", "first_stage_model."}) {
    std::string pre = p;
    if (!dec_found_ && w_.has(pre + "decoder.layers.0.weight")) {
      dec_ = pre + "decoder.layers.";
      dec_found_ = true;
    }
    if (!enc_found_ && w_.has(pre + "encoder.layers.0.weight")) {
      enc_ = pre + "encoder.layers.";
      enc_found_ = true;
    }
  }
  if (!dec_found_ && !enc_found_) {
    // the original release files: a bare Sequential, the decoder's index 0 being the Clamp
    auto is_conv = [&](const std::string& n, int64_t in_ch) {
      if (!w_.has(n)) return false;
      const Tensor& t = w_.raw(n);
      return t.ndim == 4 && t.shape[0] == 64 && (in_ch < 0 || t.shape[1] == in_ch);
    };
    if (!w_.has("0.weight") && is_conv("1.weight", -1) && w_.has("3.conv.0.weight")) {
      dec_found_ = true;
      dec_shift_ = 1;
    } else if (is_conv("0.weight", 3) && w_.has("1.conv.0.weight")) {
      enc_found_ = true;
    }
  }
  if (!dec_found_ && !enc_found_)
    throw_error(ErrorCode::InvalidFile, what_ + ": not a TAESD file (no decoder.layers.* / encoder.layers.* tensors, "
                                                "nor the layout of taesd_decoder / taesd_encoder)");
  // every weight the two networks use must be there, floating-point or quantized, with the shapes the architecture
  // needs (biases too): a broken file fails here, naming the tensor (models/validate.h)
  auto need = [&](const std::string& layer, int64_t oc, int64_t ic) {
    return validate_conv_shapes(w_, layer, ic, oc, 3, what_, "TAESD");
  };
  auto need_block = [&](const std::string& p) {
    need(p + ".conv.0", 64, 64);
    need(p + ".conv.2", 64, 64);
    need(p + ".conv.4", 64, 64);
    if (w_.has(p + ".skip.weight")) validate_conv_shapes(w_, p + ".skip", 64, 64, 1, what_, "TAESD");
  };
  if (dec_found_) {
    const std::string first = layer(dec_, 0, dec_shift_);
    need(first, 64, -1);
    latent_channels_ = (int)w_.raw(first + ".weight").shape[1];
    for (int i : kDecConvs) need(layer(dec_, i, dec_shift_), i == 18 ? 3 : 64, i == 0 ? latent_channels_ : 64);
    for (int i : kDecBlocks) need_block(layer(dec_, i, dec_shift_));
  }
  if (enc_found_) {
    const std::string last = layer(enc_, 14, 0);
    const int zc = (int)need(last, -1, 64);
    if (dec_found_ && zc != latent_channels_)
      throw_error(ErrorCode::InvalidFile, what_ + ": TAESD encoder gives " + std::to_string(zc) +
                                              " latent channels but the decoder takes " + std::to_string(latent_channels_));
    latent_channels_ = zc;
    for (int i : kEncConvs) need(layer(enc_, i, 0), i == 14 ? zc : 64, i == 0 ? 3 : 64);
    for (int i : kEncBlocks) need_block(layer(enc_, i, 0));
  }
}

Tensor TaesdModel::block(const std::string& p, const Tensor& x) {
  if (abort_check_ && abort_check_()) throw_error(ErrorCode::Aborted, "generation was aborted");
  Backend& be = w_.backend();
  Tensor h = be.unary(UnaryOp::Relu, conv(w_, p + ".conv.0", x, 1, 1));
  h = be.unary(UnaryOp::Relu, conv(w_, p + ".conv.2", h, 1, 1));
  h = conv(w_, p + ".conv.4", h, 1, 1);
  if (w_.has(p + ".skip.weight")) {
    Tensor s = conv(w_, p + ".skip", x, 1, 0);
    be.add_(h, s);
  } else {
    be.add_(h, x);
  }
  return be.unary(UnaryOp::Relu, h);
}

Tensor TaesdModel::decode(const Tensor& z) {
  if (!dec_found_) throw_error(ErrorCode::InvalidArgument, what_ + " holds no TAESD decoder (only an encoder)");
  if (z.ndim != 4 || z.shape[1] != latent_channels_)
    throw_error(ErrorCode::InvalidArgument, "TAESD decoder input must be [B, " + std::to_string(latent_channels_) +
                                                ", h, w], got " + z.shape_str());
  Backend& be = w_.backend();
  auto L = [&](int i) { return layer(dec_, i, dec_shift_); };
  Tensor h = be.scale(be.unary(UnaryOp::Tanh, be.scale(z, 1.0f / 3.0f)), 3.0f);  // the Clamp layer
  h = be.unary(UnaryOp::Relu, conv(w_, L(0), h, 1, 1));
  int i = 2;
  for (int stage = 0; stage < 3; ++stage) {
    for (int b = 0; b < 3; ++b) h = block(L(i++), h);
    ++i;  // Upsample
    h = be.upsample_nearest2x(h);
    h = conv(w_, L(i++), h, 1, 1);
  }
  h = block(L(i++), h);
  h = conv(w_, L(i), h, 1, 1);
  dump("taesd.dec.out", h);
  return h;
}

Tensor TaesdModel::encode(const Tensor& image) {
  if (!enc_found_) throw_error(ErrorCode::InvalidArgument, what_ + " holds no TAESD encoder (only a decoder)");
  if (image.ndim != 4 || image.shape[1] != 3 || image.shape[2] % 8 || image.shape[3] % 8)
    throw_error(ErrorCode::InvalidArgument, "TAESD encoder input must be [B, 3, H, W] with H and W multiples of 8, got " +
                                                image.shape_str());
  auto L = [&](int i) { return layer(enc_, i, 0); };
  Tensor h = conv(w_, L(0), image, 1, 1);
  h = block(L(1), h);
  int i = 2;
  for (int stage = 0; stage < 3; ++stage) {
    h = conv(w_, L(i++), h, 2, 1);
    for (int b = 0; b < 3; ++b) h = block(L(i++), h);
  }
  return conv(w_, L(i), h, 1, 1);
}

TaesdFile::TaesdFile(const std::string& path, Backend& backend) : path_(path) {
  file_ = WeightFile::open(path);
  store_ = std::make_unique<WeightStore>(file_.get(), backend);
  model_ = std::make_unique<TaesdModel>(*store_, path);
}

TaesdFile::~TaesdFile() {
  model_.reset();
  store_.reset();
  file_.reset();
}

}  // namespace sdn
