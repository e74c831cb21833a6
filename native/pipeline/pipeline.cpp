#include "pipeline/pipeline.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>

#include "backends/backend.h"
#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

namespace {
struct StateReset {
  std::function<void()> fn;
  ~StateReset() { fn(); }
};
}  // namespace

DiffusionPipeline::DiffusionPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                                     Prediction prediction, ModelConfig config)
    : store_(std::move(store)), prediction_(prediction) {
  conditioner_ = std::make_unique<ClipConditioner>(*store_, std::move(tokenizer), config.clip_heads);
  unet_ = std::make_unique<UNetModel>(*store_, "model.diffusion_model.", config.unet_heads);
  {
    // Streaming of memory-mapped U-Net weights (release each block's pages after it ran) is on by default:
    // resident memory drops from the whole U-Net (1.7 GB in f16) to about one block, and re-mapping the pages
    // from the page cache costs no measurable time at 512² (a few % at 256²). SDN_STREAM_WEIGHTS=0 turns it off.
    const char* sw = std::getenv("SDN_STREAM_WEIGHTS");
    unet_->set_stream_weights(!(sw && *sw == '0'));
  }
  vae_ = std::make_unique<VaeModel>(*store_);
  if (unet_->context_dim() != conditioner_->context_dim())
    throw_error(ErrorCode::InvalidFile, "the U-Net expects a text context of width " +
                                            std::to_string(unet_->context_dim()) + " but the text encoder gives " +
                                            std::to_string(conditioner_->context_dim()));
  if (store_->has("alphas_cumprod")) {
    const Tensor& ac = store_->raw("alphas_cumprod");
    if (ac.numel() == 1000) {
      Tensor f = ac.to_f32();
      schedule_ = std::make_unique<DiscreteSchedule>(std::vector<float>(f.f32(), f.f32() + 1000));
    }
  }
  if (!schedule_) schedule_ = std::make_unique<DiscreteSchedule>();
  denoiser_ = std::make_unique<CfgDenoiser>(store_->backend(), *unet_, *schedule_, prediction_);
}

Image DiffusionPipeline::latent_preview(const std::vector<float>& latent, int h, int w) {
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

void DiffusionPipeline::check_params(const GenerateParams& p) const {
  const int m = 8 * unet_->size_multiple();
  if (p.width % m) throw_error(ErrorCode::InvalidArgument, "width must be a multiple of " + std::to_string(m) +
                                                               " for this model, got " + std::to_string(p.width));
  if (p.height % m) throw_error(ErrorCode::InvalidArgument, "height must be a multiple of " + std::to_string(m) +
                                                                " for this model, got " + std::to_string(p.height));
  if (p.clip_skip > conditioner_->max_clip_skip())
    throw_error(ErrorCode::InvalidArgument, "clip_skip must be at most " + std::to_string(conditioner_->max_clip_skip()) +
                                                " (the text encoder's layer count), got " + std::to_string(p.clip_skip));
}

Image DiffusionPipeline::decode(std::vector<float>& x, int lh, int lw, const GenerateParams& p) {
  Backend& be = store_->backend();
  const int C = unet_->out_channels();
  Tensor z = be.scale(be.upload(Tensor::wrap(x.data(), {1, C, lh, lw}, DType::F32)), 1.0f / latent_scale_);
  x.clear();
  x.shrink_to_fit();
  Tensor dec = vae_->decode(z);
  z = Tensor();
  if (dec.ndim != 4 || dec.shape[1] != 3 || dec.shape[2] != p.height || dec.shape[3] != p.width)
    throw_error(ErrorCode::InvalidFile, "the VAE decoder turned a " + std::to_string(lw) + "x" + std::to_string(lh) +
                                            " latent into " + dec.shape_str() + " instead of an RGB " +
                                            std::to_string(p.width) + "x" + std::to_string(p.height) + " image");
  Tensor px = be.to_host(dec);
  if (!px.is_contiguous()) px = px.contiguous();
  dec = Tensor();
  check_finite(px.f32(), (size_t)px.numel(), "VAE decoder");
  Image im;
  im.width = p.width;
  im.height = p.height;
  im.channels = 3;
  im.data.resize((size_t)p.width * p.height * 3);
  const size_t plane = (size_t)p.width * p.height;
  const float* src = px.f32();
  for (size_t q = 0; q < plane; ++q)
    for (int k = 0; k < 3; ++k) {
      float v = (src[k * plane + q] + 1.f) * 0.5f;
      v = std::min(1.f, std::max(0.f, v));
      if (!(v == v)) v = 0;  // NaN -> 0
      im.data[q * 3 + k] = (uint8_t)(v * 255.f);
    }
  return im;
}

std::vector<Image> DiffusionPipeline::generate(const GenerateParams& p, const GenerateCallbacks& cb) {
  validate_params(p);
  check_params(p);
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
  conditioner_->set_abort_check(cb.should_abort);
  StateReset reset{[this] {
    unet_->set_abort_check({});
    vae_->set_abort_check({});
    conditioner_->set_abort_check({});
    denoiser_->clear();
  }};

  int64_t seed = p.seed;
  if (seed < 0) {
    std::random_device rd;
    seed = (int64_t)(rd() % 4294967294u);
  }

  // 1. text conditioning
  check_abort();
  progress(Phase::Encode, 0, 1, 0);
  {
    Conditioning cond = conditioner_->encode(p.prompt, p);
    Conditioning uncond;
    if (p.cfg_scale != 1.0f) uncond = conditioner_->encode(p.negative_prompt, p);
    denoiser_->set_conditioning(cond, uncond, p.cfg_scale);
  }
  if (options_.release_between_stages) {
    conditioner_->release();
    be.trim();  // cached activation blocks of one stage are the wrong sizes for the next
  }
  progress(Phase::Encode, 1, 1, 0);

  // 2. sampling, every image of the batch
  const int lh = p.height / 8, lw = p.width / 8, C = unet_->out_channels();
  const int64_t n = (int64_t)C * lh * lw;
  std::vector<float> sigmas = make_sigmas(*schedule_, p.scheduler, p.steps);
  std::vector<std::vector<float>> latents;
  std::vector<int64_t> seeds;
  Denoiser model = [&](const std::vector<float>& x, float sigma, std::vector<float>& den) {
    denoiser_->denoise(x, sigma, lh, lw, den);
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
  denoiser_->clear();
  if (options_.release_between_stages) {
    unet_->release();
    be.trim();
  }

  // 3. decode
  std::vector<Image> images;
  for (int img = 0; img < p.batch_count; ++img) {
    check_abort();
    progress(Phase::Decode, img, p.batch_count, img);
    images.push_back(decode(latents[img], lh, lw, p));
    images.back().seed = seeds[img];
    progress(Phase::Decode, img + 1, p.batch_count, img);
  }
  if (options_.release_between_stages) {
    vae_->release_decoder();
    be.trim();
  }
  return images;
}

}  // namespace sdn
