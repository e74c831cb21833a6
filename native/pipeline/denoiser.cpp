#include "pipeline/denoiser.h"

#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

namespace {
const Tensor* opt(const Tensor& t) { return t.defined() ? &t : nullptr; }
}  // namespace

void CfgDenoiser::clear() {
  cond_ = uncond_ = both_ = Conditioning();
  extra_ = Tensor();
  cfg_ = 1.f;
  cache_cond_.clear();
  cache_uncond_.clear();
  cache_both_.clear();
  control_ = nullptr;
  hint_ = Tensor();
  ccache_cond_.clear();
  ccache_uncond_.clear();
  ccache_both_.clear();
}

void CfgDenoiser::set_control(ControlNetModel* model, const Tensor& hint, float strength, float sigma_lo,
                              float sigma_hi) {
  control_ = model;
  hint_ = hint;
  control_strength_ = strength;
  control_lo_ = sigma_lo;
  control_hi_ = sigma_hi;
  ccache_cond_.clear();
  ccache_uncond_.clear();
  ccache_both_.clear();
}

Tensor CfgDenoiser::unet(const Tensor& xin, const std::vector<float>& t, const Tensor& context,
                         UNetContextCache* cache, UNetContextCache* control_cache, float sigma, const Tensor* y) {
  if (control_ && sigma >= control_lo_ && sigma <= control_hi_) {
    // the ControlNet takes the latent without extra channels, and the same vector conditioning y as the U-Net (SDXL)
    std::vector<Tensor> res = control_->forward(xin, t, context, hint_, control_strength_, control_cache, y);
    return unet_.forward(unet_input(xin), t, context, cache, &res, y);
  }
  return unet_.forward(unet_input(xin), t, context, cache, nullptr, y);
}

void CfgDenoiser::set_conditioning(const Conditioning& cond, const Conditioning& uncond, float cfg) {
  clear();
  // the text encoder may run on another backend (the CPU): bring the conditioning over once
  cond_ = cond;
  uncond_ = uncond;
  for (Conditioning* c : {&cond_, &uncond_}) {
    if (c->context.defined()) c->context = be_.upload(c->context);
    if (c->y.defined()) c->y = be_.upload(c->y);
  }
  cfg_ = cfg;
  if (cfg != 1.0f && uncond.defined() && options_.batch_cfg && uncond.context.shape[1] == cond.context.shape[1]) {
    both_.context = be_.concat(cond_.context, uncond_.context, 0);
    if (cond_.y.defined() && uncond_.y.defined()) both_.y = be_.concat(cond_.y, uncond_.y, 0);
  }
}

Tensor CfgDenoiser::unet_input(const Tensor& x_scaled) const {
  if (!extra_.defined()) return x_scaled;
  Tensor e = extra_;
  if (x_scaled.shape[0] != e.shape[0]) {
    Tensor r = e;
    for (int64_t b = 1; b < x_scaled.shape[0]; ++b) r = be_.concat(r, e, 0);
    e = r;
  }
  return be_.concat(x_scaled, e, 1);
}

void CfgDenoiser::denoise(const std::vector<float>& x, float sigma, int h, int w, std::vector<float>& den) {
  const int C = unet_.out_channels();
  const int64_t n = (int64_t)C * h * w;
  if ((int64_t)x.size() != n) throw_error(ErrorCode::Internal, "denoise: latent size mismatch");
  if (!cond_.defined()) throw_error(ErrorCode::Internal, "denoise: no conditioning set");
  DenoiserScalings s = denoiser_scalings(prediction_, sigma);
  const float t = schedule_.sigma_to_t(sigma);
  const bool use_cfg = cfg_ != 1.0f && uncond_.defined();
  Tensor xd = be_.upload(Tensor::wrap(const_cast<float*>(x.data()), {1, C, h, w}, DType::F32));
  Tensor xin = be_.scale(xd, s.c_in);
  Tensor f;  // the model output after CFG
  if (!use_cfg) {
    f = unet(xin, {t}, cond_.context, &cache_cond_, &ccache_cond_, sigma, opt(cond_.y));
  } else if (both_.defined()) {
    Tensor both = unet(be_.concat(xin, xin, 0), {t, t}, both_.context, &cache_both_, &ccache_both_, sigma, opt(both_.y));
    f = be_.combine(both.slice0(0, 1), cfg_, both.slice0(1, 2), 1.0f - cfg_);
  } else {
    Tensor fc = unet(xin, {t}, cond_.context, &cache_cond_, &ccache_cond_, sigma, opt(cond_.y));
    Tensor fu = unet(xin, {t}, uncond_.context, &cache_uncond_, &ccache_uncond_, sigma, opt(uncond_.y));
    f = be_.combine(fc, cfg_, fu, 1.0f - cfg_);
  }
  xin = Tensor();
  Tensor out = be_.to_host(be_.combine(xd, s.c_skip, f, s.c_out));
  if (!out.is_contiguous()) out = out.contiguous();
  den.assign(out.f32(), out.f32() + n);
  check_finite(den.data(), den.size(), "U-Net", "at sigma " + std::to_string(sigma));
}

}  // namespace sdn
