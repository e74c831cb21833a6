#include "pipeline/txt2img.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "backends/backend.h"
#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

namespace {
constexpr float kSd1LatentScale = 0.18215f;

// Copies a host tensor into the backend (a no-op on CPU) after making it contiguous.
Tensor to_backend(Backend& be, const Tensor& host) { return be.from_host(host); }

std::vector<float> host_vector(Backend& be, const Tensor& t) {
  Tensor h = be.to_host(t);
  if (!h.is_contiguous()) h = h.contiguous();
  return std::vector<float>(h.f32(), h.f32() + h.numel());
}

struct StateReset {
  std::function<void()> fn;
  ~StateReset() { fn(); }
};
}  // namespace

Txt2ImgPipeline::Txt2ImgPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                                 Prediction prediction, ModelConfig config)
    : store_(std::move(store)), tokenizer_(std::move(tokenizer)), prediction_(prediction) {
  clip_ = std::make_unique<ClipTextModel>(*store_, "cond_stage_model.transformer.text_model.", config.clip_heads);
  unet_ = std::make_unique<UNetModel>(*store_, "model.diffusion_model.", config.unet_heads);
  {
    // Streaming of memory-mapped U-Net weights (release each block's pages after it ran) is on by default:
    // resident memory drops from the whole U-Net (1.7 GB in f16) to about one block, and re-mapping the pages
    // from the page cache costs no measurable time at 512² (a few % at 256²). SDN_STREAM_WEIGHTS=0 turns it off.
    const char* sw = std::getenv("SDN_STREAM_WEIGHTS");
    unet_->set_stream_weights(!(sw && *sw == '0'));
  }
  vae_ = std::make_unique<VaeModel>(*store_);
  if (unet_->context_dim() != clip_->width())
    throw_error(ErrorCode::InvalidFile, "the U-Net expects a text context of width " +
                                            std::to_string(unet_->context_dim()) + " but the text encoder gives " +
                                            std::to_string(clip_->width()));
  if (store_->has("alphas_cumprod")) {
    const Tensor& ac = store_->raw("alphas_cumprod");
    if (ac.numel() == 1000) {
      Tensor f = ac.to_f32();
      schedule_ = std::make_unique<DiscreteSchedule>(std::vector<float>(f.f32(), f.f32() + 1000));
    }
  }
  if (!schedule_) schedule_ = std::make_unique<DiscreteSchedule>();
}

Tensor Txt2ImgPipeline::encode_prompt(const std::string& prompt, int clip_skip,
                                      const std::function<bool()>& should_abort) {
  if (!tokenizer_) throw_error(ErrorCode::NotFound, "no CLIP tokenizer is loaded");
  TokenizedPrompt tp = tokenize_prompt(*tokenizer_, prompt);  // at most kMaxPromptChunks chunks
  const int T = clip_->positions();
  if (tp.chunks < 1 || (int64_t)tp.ids.size() != (int64_t)tp.chunks * T || tp.weights.size() != tp.ids.size())
    throw_error(ErrorCode::Internal, "tokenized prompt has " + std::to_string(tp.ids.size()) +
                                         " ids for " + std::to_string(tp.chunks) + " chunks of " + std::to_string(T));
  Backend& be = store_->backend();
  // One text-encoder pass per DISTINCT chunk (repeated chunks, e.g. the empty ones of "BREAK BREAK", are encoded
  // once), polling the abort callback between passes: the cost is linear in what carries tokens.
  const size_t CT = (size_t)T;
  std::vector<int> first_of(tp.chunks, -1);  // chunk -> the earlier chunk with the same ids, or -1
  for (int c = 0; c < tp.chunks && tp.chunks > 1; ++c)
    for (int e = 0; e < c; ++e)
      if (first_of[e] < 0 && std::equal(tp.ids.begin() + c * CT, tp.ids.begin() + (c + 1) * CT, tp.ids.begin() + e * CT)) {
        first_of[c] = e;
        break;
      }
  int64_t D = 0;
  bool have = false;
  Tensor hz;  // [chunks, T, D] on the host
  for (int c = 0; c < tp.chunks; ++c) {
    if (should_abort && should_abort()) throw_error(ErrorCode::Aborted, "generation was aborted");
    if (first_of[c] >= 0) continue;
    std::vector<int> ids(tp.ids.begin() + c * CT, tp.ids.begin() + (c + 1) * CT);
    Tensor z = be.to_host(clip_->encode(ids, 1, clip_skip));  // [1, T, D]
    if (!z.is_contiguous()) z = z.contiguous();
    if (!have) {
      have = true;
      D = z.shape[2];
      hz = Tensor::empty({tp.chunks, T, D});
    }
    std::memcpy(hz.f32() + (size_t)c * CT * D, z.f32(), CT * D * sizeof(float));
  }
  for (int c = 0; c < tp.chunks; ++c)
    if (first_of[c] >= 0)
      std::memcpy(hz.f32() + (size_t)c * CT * D, hz.f32() + (size_t)first_of[c] * CT * D, CT * D * sizeof(float));
  check_finite(hz.f32(), (size_t)hz.numel(), "text encoder");
  for (int c = 0; c < tp.chunks; ++c) {
    const float* w = tp.weights.data() + (size_t)c * T;
    bool all_one = true;
    for (int i = 0; i < T; ++i) all_one = all_one && w[i] == 1.0f;
    if (all_one) continue;
    apply_emphasis(hz.f32() + (size_t)c * T * D, T, (int)D, w);  // scale rows, restore the chunk's mean
  }
  // chunks are concatenated along the token axis: [chunks, T, D] has the same memory as [1, chunks*T, D]
  Tensor out = to_backend(be, hz.reshape({1, (int64_t)tp.chunks * T, D}));
  dump("cond", out);
  return out;
}

void Txt2ImgPipeline::denoise(const std::vector<float>& x, float sigma, int h, int w, std::vector<float>& out) {
  Backend& be = store_->backend();
  const int C = unet_->in_channels();
  const int64_t n = (int64_t)C * h * w;
  if ((int64_t)x.size() != n) throw_error(ErrorCode::Internal, "denoise: latent size mismatch");
  DenoiserScalings s = denoiser_scalings(prediction_, sigma);
  const float t = schedule_->sigma_to_t(sigma);
  const bool use_cfg = cfg_ != 1.0f && uncond_.defined() && uncond_.data;
  std::vector<float> cond, unc;
  if (!use_cfg) {
    Tensor xin = Tensor::empty({1, C, h, w});
    for (int64_t i = 0; i < n; ++i) xin.f32()[i] = x[(size_t)i] * s.c_in;
    cond = host_vector(be, unet_->forward(to_backend(be, xin), {t}, cond_, &cache_cond_));
  } else if (both_.data) {
    Tensor xin = Tensor::empty({2, C, h, w});
    for (int64_t i = 0; i < n; ++i) xin.f32()[i] = xin.f32()[n + i] = x[(size_t)i] * s.c_in;
    std::vector<float> f = host_vector(be, unet_->forward(to_backend(be, xin), {t, t}, both_, &cache_both_));
    cond.assign(f.begin(), f.begin() + n);
    unc.assign(f.begin() + n, f.end());
  } else {
    Tensor xin = Tensor::empty({1, C, h, w});
    for (int64_t i = 0; i < n; ++i) xin.f32()[i] = x[(size_t)i] * s.c_in;
    Tensor xb = to_backend(be, xin);
    cond = host_vector(be, unet_->forward(xb, {t}, cond_, &cache_cond_));
    unc = host_vector(be, unet_->forward(xb, {t}, uncond_, &cache_uncond_));
  }
  out.resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    float f = use_cfg ? unc[(size_t)i] + cfg_ * (cond[(size_t)i] - unc[(size_t)i]) : cond[(size_t)i];
    out[(size_t)i] = s.c_skip * x[(size_t)i] + s.c_out * f;
  }
  check_finite(out.data(), out.size(), "U-Net", "at sigma " + std::to_string(sigma));
}

void Txt2ImgPipeline::set_conditioning(const Tensor& cond, const Tensor& uncond, float cfg) {
  Backend& be = store_->backend();
  cond_ = cond;
  uncond_ = uncond;
  both_ = Tensor();
  cfg_ = cfg;
  cache_cond_.clear();
  cache_uncond_.clear();
  cache_both_.clear();
  if (cfg != 1.0f && uncond.data && options_.batch_cfg && uncond.shape[1] == cond.shape[1]) {
    Tensor hc = be.to_host(cond).contiguous(), hu = be.to_host(uncond).contiguous();
    Tensor both = Tensor::empty({2, cond.shape[1], cond.shape[2]});
    std::memcpy(both.f32(), hc.f32(), hc.nbytes());
    std::memcpy(both.f32() + hc.numel(), hu.f32(), hu.nbytes());
    both_ = to_backend(be, both);
  }
}

Image Txt2ImgPipeline::latent_preview(const std::vector<float>& latent, int h, int w) {
  // The widely used SD1.x latent -> RGB linear factors (rows: latent channels 0..3; columns: R, G, B).
  static const float f[4][3] = {{0.3512f, 0.2297f, 0.3227f},
                                {0.3250f, 0.4974f, 0.2350f},
                                {-0.2829f, 0.1762f, 0.2721f},
                                {-0.2120f, -0.2616f, -0.7177f}};
  Image img;
  img.width = w;
  img.height = h;
  img.channels = 3;
  img.data.resize((size_t)w * h * 3);
  const size_t plane = (size_t)w * h;
  int C = (int)std::min<size_t>(4, latent.size() / (plane ? plane : 1));
  for (size_t p = 0; p < plane; ++p)
    for (int k = 0; k < 3; ++k) {
      float v = 0;
      for (int c = 0; c < C; ++c) v += latent[c * plane + p] * f[c][k];
      v = std::min(1.f, std::max(0.f, (v + 1.f) * 0.5f));
      img.data[p * 3 + k] = (uint8_t)(v * 255.f);
    }
  return img;
}

std::vector<Image> Txt2ImgPipeline::generate(const GenerateParams& p, const GenerateCallbacks& cb) {
  validate_params(p);
  const int m = 8 * unet_->size_multiple();
  if (p.width % m) throw_error(ErrorCode::InvalidArgument, "width must be a multiple of " + std::to_string(m) +
                                                               " for this model, got " + std::to_string(p.width));
  if (p.height % m) throw_error(ErrorCode::InvalidArgument, "height must be a multiple of " + std::to_string(m) +
                                                                " for this model, got " + std::to_string(p.height));
  if (p.clip_skip > clip_->layers())
    throw_error(ErrorCode::InvalidArgument, "clip_skip must be at most " + std::to_string(clip_->layers()) +
                                                " (the text encoder's layer count), got " + std::to_string(p.clip_skip));
  Backend& be = store_->backend();
  auto aborted = [&] { return cb.should_abort && cb.should_abort(); };
  auto check_abort = [&] {
    if (aborted()) throw_error(ErrorCode::Aborted, "generation was aborted");
  };
  auto progress = [&](Phase ph, int step, int steps, int image) {
    if (!cb.on_progress) return;
    Progress pr;
    pr.phase = ph;
    pr.step = step;
    pr.steps = steps;
    pr.image = image;
    pr.images = p.batch_count;
    cb.on_progress(pr);
  };
  // the networks also poll between blocks, so an abort does not wait for a whole U-Net pass or VAE decode
  unet_->set_abort_check(cb.should_abort);
  vae_->set_abort_check(cb.should_abort);
  auto clear_conditioning = [this] {
    cond_ = uncond_ = both_ = Tensor();
    cache_cond_.clear();
    cache_uncond_.clear();
    cache_both_.clear();
    cfg_ = 1.f;
  };
  StateReset reset{[this, clear_conditioning] {
    unet_->set_abort_check({});
    vae_->set_abort_check({});
    clear_conditioning();
  }};

  // seeds
  int64_t seed = p.seed;
  if (seed < 0) {
    std::random_device rd;
    seed = (int64_t)(rd() % 4294967294u);
  }

  // 1. text conditioning
  check_abort();
  progress(Phase::Encode, 0, 1, 0);
  {
    Tensor cond = encode_prompt(p.prompt, p.clip_skip, cb.should_abort);
    Tensor uncond;
    if (p.cfg_scale != 1.0f) uncond = encode_prompt(p.negative_prompt, p.clip_skip, cb.should_abort);
    set_conditioning(cond, uncond, p.cfg_scale);
  }
  if (options_.release_between_stages) {
    clip_->release();
    default_tensor_pool().trim();  // cached activation blocks of one stage are the wrong sizes for the next
  }
  progress(Phase::Encode, 1, 1, 0);

  // 2. sampling, every image of the batch
  const int lh = p.height / 8, lw = p.width / 8, C = unet_->in_channels();
  const int64_t n = (int64_t)C * lh * lw;
  std::vector<float> sigmas = make_sigmas(*schedule_, p.scheduler, p.steps);
  std::vector<std::vector<float>> latents;
  std::vector<int64_t> seeds;
  Denoiser model = [&](const std::vector<float>& x, float sigma, std::vector<float>& den) {
    denoise(x, sigma, lh, lw, den);
  };
  for (int img = 0; img < p.batch_count; ++img) {
    check_abort();
    const int64_t s = seed + img;
    auto gen = make_noise_generator(p.rng, (uint64_t)s);
    std::vector<float> x((size_t)n);
    gen->randn(x.data(), n);
    for (float& v : x) v *= sigmas[0];
    progress(Phase::Sample, 0, p.steps, img);
    run_sampler(p.sampler, model, x, sigmas, *gen, [&](int i, int steps) {
      const int done = i + 1;  // i is the 0-based index of the step just finished (sampling.h)
      progress(Phase::Sample, done, steps, img);
      if (cb.on_preview && p.preview_every > 0 && (done % p.preview_every == 0 || done == steps))
        cb.on_preview(done, latent_preview(x, lh, lw));
      return !aborted();
    });
    latents.push_back(std::move(x));
    seeds.push_back(s);
  }
  clear_conditioning();
  if (options_.release_between_stages) {
    unet_->release();
    default_tensor_pool().trim();
  }

  // 3. decode
  std::vector<Image> images;
  for (int img = 0; img < p.batch_count; ++img) {
    check_abort();
    progress(Phase::Decode, img, p.batch_count, img);
    Tensor z = Tensor::empty({1, C, lh, lw});
    for (int64_t i = 0; i < n; ++i) z.f32()[i] = latents[img][(size_t)i] / kSd1LatentScale;
    latents[img].clear();
    latents[img].shrink_to_fit();
    Tensor dec = vae_->decode(to_backend(be, z));
    if (dec.ndim != 4 || dec.shape[1] != 3 || dec.shape[2] != p.height || dec.shape[3] != p.width)
      throw_error(ErrorCode::InvalidFile, "the VAE decoder turned a " + std::to_string(lw) + "x" + std::to_string(lh) +
                                              " latent into " + dec.shape_str() + " instead of an RGB " +
                                              std::to_string(p.width) + "x" + std::to_string(p.height) + " image");
    std::vector<float> px = host_vector(be, dec);
    dec = Tensor();
    check_finite(px.data(), px.size(), "VAE decoder");
    Image im;
    im.width = p.width;
    im.height = p.height;
    im.channels = 3;
    im.seed = seeds[img];
    im.data.resize((size_t)p.width * p.height * 3);
    const size_t plane = (size_t)p.width * p.height;
    for (size_t q = 0; q < plane; ++q)
      for (int k = 0; k < 3; ++k) {
        float v = (px[k * plane + q] + 1.f) * 0.5f;
        v = std::min(1.f, std::max(0.f, v));  // NaN -> 0 via max's comparison order
        if (!(v == v)) v = 0;
        im.data[q * 3 + k] = (uint8_t)(v * 255.f);
      }
    images.push_back(std::move(im));
    progress(Phase::Decode, img + 1, p.batch_count, img);
  }
  if (options_.release_between_stages) {
    vae_->release_decoder();
    default_tensor_pool().trim();
  }
  return images;
}

}  // namespace sdn
