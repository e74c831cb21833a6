// TAESD / TAESDXL (tiny autoencoder, madebyollin): a small conv-only decoder (latent -> image) and encoder
// (image -> latent), written against the Backend interface only.
//
// Tensor names accepted (the layouts the public releases use):
//   * diffusers AutoencoderTiny (`diffusion_pytorch_model.safetensors`, also what make_random_sd.py writes):
//     `decoder.layers.N.*` and `encoder.layers.N.*`, N = the index in the Sequential without the Clamp;
//   * the original release files `taesd_decoder.{pth,safetensors}` / `taesdxl_decoder.*` (indices shifted by one:
//     index 0 is the Clamp, so the first conv is `1.weight`) and `taesd_encoder.*` (`0.weight` .. `14.weight`);
//   * any of the above under a `taesd.` / `vae.` / `first_stage_model.` prefix.
// Architecture: Block(c) = ReLU(conv3(ReLU(conv3(ReLU(conv3(x))))) + x) (`conv.0`, `conv.2`, `conv.4`);
//   decoder: tanh(z/3)*3, conv(zc->64), ReLU, 3x[3 Blocks, nearest 2x upsample, conv(no bias)], Block, conv(64->3);
//   encoder: conv(3->64), Block, 3x[conv stride 2 (no bias), 3 Blocks], conv(64->zc).
// Scales: the decoder takes the diffusion latent as the U-Net sees it (no 1/scale_factor) and gives RGB in about
// [0, 1]; the encoder takes RGB in [0, 1] and gives the diffusion latent.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "models/weights.h"

namespace sdn {

class WeightFile;

class TaesdModel {
 public:
  // Reads the layout from the store's names; throws InvalidFile naming `what` (the file) when neither a decoder
  // nor an encoder is found.
  TaesdModel(WeightStore& w, const std::string& what);

  bool has_decoder() const { return dec_found_; }
  bool has_encoder() const { return enc_found_; }
  int latent_channels() const { return latent_channels_; }
  // z [B, zc, h, w] -> [B, 3, 8h, 8w] in about [0, 1].
  Tensor decode(const Tensor& z);
  // image [B, 3, H, W] in [0, 1] (H, W multiples of 8) -> [B, zc, H/8, W/8].
  Tensor encode(const Tensor& image);
  void set_abort_check(std::function<bool()> fn) { abort_check_ = std::move(fn); }

 private:
  Tensor block(const std::string& p, const Tensor& x);
  std::string layer(const std::string& base, int index, int shift) const;

  WeightStore& w_;
  std::string what_;
  std::string dec_, enc_;  // name prefixes of the two Sequentials (may be empty: the original files)
  bool dec_found_ = false, enc_found_ = false;
  int dec_shift_ = 0;      // 1 for the original decoder files (index 0 = Clamp)
  int latent_channels_ = 4;
  std::function<bool()> abort_check_;
};

// A TAESD file opened on a backend: the file, its weight store and the model (one object to keep together).
class TaesdFile {
 public:
  TaesdFile(const std::string& path, Backend& backend);
  ~TaesdFile();
  TaesdModel& model() { return *model_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<WeightFile> file_;
  std::unique_ptr<WeightStore> store_;
  std::unique_ptr<TaesdModel> model_;
};

}  // namespace sdn
