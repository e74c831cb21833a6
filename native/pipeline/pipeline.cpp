#include "pipeline/pipeline.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>
#include <unistd.h>

#include "backends/backend.h"
#include "models/validate.h"
#include "sdn/error.h"

namespace sdn {

namespace {
// A copy of host floats as a backend tensor that owns its memory (upload() may return a view of host data on a
// host backend, which must not outlive the vector it wraps).
Tensor upload_copy(Backend& be, const float* data, const std::vector<int64_t>& shape) {
  Tensor t = be.empty(shape, DType::F32);
  be.write(t, Tensor::wrap(const_cast<float*>(data), shape, DType::F32));
  return t;
}

struct StateReset {
  std::function<void()> fn;
  ~StateReset() { fn(); }
};

// Reads the model's weight pages into the page cache ahead of the stages that use them, on a thread of its own,
// in the order the stages run (text encoder, U-Net, VAE): with a cold page cache (first use after boot, or a
// model evicted by other work) the weights then come in as large sequential reads overlapping the text encoder's
// and the first U-Net blocks' compute, instead of one synchronous page fault at a time inside the kernels. Pages
// already cached are skipped (mincore), so a warm generate costs a scan of the page tables only. The process's
// resident set does not grow (MADV_WILLNEED maps nothing). SDN_PREFETCH=0 turns it off. Joined when generate()
// ends, early (at the next 32 MiB chunk) when it ends before the reads are issued.
class WeightPrefetch {
 public:
  explicit WeightPrefetch(std::vector<const WeightStore*> stores) {
    const char* e = std::getenv("SDN_PREFETCH");
    if (e && *e == '0') return;
    thread_ = std::thread([this, stores] {
      try {
        for (const char* prefix : {"cond_stage_model.", "conditioner.", "model.diffusion_model.", "first_stage_model."})
          for (const WeightStore* s : stores)
            if (s && !stop_.load(std::memory_order_relaxed)) s->prefetch(prefix, &stop_);
      } catch (...) {
        // only a hint: out of memory for the range lists just means no read-ahead
      }
    });
  }
  ~WeightPrefetch() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};
}  // namespace

DiffusionPipeline::DiffusionPipeline(std::unique_ptr<WeightStore> store, std::shared_ptr<ClipTokenizer> tokenizer,
                                     Prediction prediction, ModelConfig config, Placement placement,
                                     std::unique_ptr<WeightStore> cpu_store)
    : store_(std::move(store)), cpu_store_(std::move(cpu_store)), placement_(placement), prediction_(prediction),
      family_(config.family),
      unet_heads_(config.unet_heads > 0 ? config.unet_heads : (config.family == ModelFamily::SD1 ? 8 : 0)),
      unet_head_dim_(config.unet_head_dim) {
  WeightStore& te_store = placement_.text_encoder_on_cpu && cpu_store_ ? *cpu_store_ : *store_;
  WeightStore& vae_store = placement_.vae_on_cpu && cpu_store_ ? *cpu_store_ : *store_;
  if (family_ == ModelFamily::SD1)
    conditioner_ = std::make_unique<ClipConditioner>(te_store, std::move(tokenizer), config.clip_heads);
  else
    conditioner_ = std::make_unique<FamilyConditioner>(te_store, std::move(tokenizer), family_, config.clip_heads);
  unet_ = std::make_unique<UNetModel>(*store_, "model.diffusion_model.", unet_heads_, false, config.unet_head_dim);
  if (family_ == ModelFamily::SDXL) latent_scale_ = 0.13025f;
  {
    // Streaming of memory-mapped U-Net weights: release each block's pages after it ran (MADV_DONTNEED), so the
    // resident set holds about one block instead of the whole U-Net (1.7 GB in f16 for SD 1.x); the pages stay
    // in the page cache and are mapped again at the next U-Net evaluation, which costs page faults: measured on
    // SD 1.5 at 256², CFG 7, 25.6 k minor faults and ~0.18 s of system CPU time per step against ~3 s of user
    // time (about 6 %). Policy (set per generation, see generate()): SDN_STREAM_WEIGHTS=1 always streams, =0
    // never; by default ("auto") a generation that evaluates the U-Net once streams (each page is read once
    // anyway) and one that evaluates it more often keeps the pages mapped until sampling ends (released then),
    // unless the U-Net's weights are more than a quarter of the machine's RAM.
    const char* sw = std::getenv("SDN_STREAM_WEIGHTS");
    stream_mode_ = sw && *sw == '0' ? 0 : sw && *sw == '1' ? 1 : -1;
    for (const std::string& name : store_->names_with_prefix("model.diffusion_model.")) unet_bytes_ += store_->raw(name).nbytes();
    unet_->set_stream_weights(stream_mode_ != 0);
  }
  vae_ = std::make_unique<VaeModel>(vae_store);
  vae_be_ = &vae_store.backend();
  te_be_ = &te_store.backend();
  if (unet_->context_dim() != conditioner_->context_dim())
    throw_error(ErrorCode::InvalidFile, "the U-Net expects a text context of width " +
                                            std::to_string(unet_->context_dim()) + " but the text encoder gives " +
                                            std::to_string(conditioner_->context_dim()));
  {
    int adm = 0;
    if (auto* fc = dynamic_cast<FamilyConditioner*>(conditioner_.get())) adm = fc->text().adm_channels();
    if (unet_->adm_channels() != adm)
      throw_error(ErrorCode::InvalidFile, "the U-Net expects a vector conditioning of width " +
                                              std::to_string(unet_->adm_channels()) + " but the text encoders give " +
                                              std::to_string(adm) + " (pooled text + 6 size embeddings of 256)");
  }
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

void DiffusionPipeline::set_prediction(Prediction p) {
  prediction_ = p;
  denoiser_ = std::make_unique<CfgDenoiser>(store_->backend(), *unet_, *schedule_, prediction_);
}

bool DiffusionPipeline::probe_v_prediction(UNetModel& unet, Backend& be) {
  const int C = unet.in_channels(), m = std::max(8, unet.size_multiple());
  const int64_t n = (int64_t)C * m * m;
  std::vector<float> xv((size_t)n, 0.5f), cv((size_t)2 * unet.context_dim(), 0.5f), yv;
  Tensor x = be.upload(Tensor::wrap(xv.data(), {1, C, m, m}, DType::F32));
  Tensor ctx = be.upload(Tensor::wrap(cv.data(), {1, 2, unet.context_dim()}, DType::F32));
  Tensor y;
  if (unet.adm_channels()) {
    yv.assign((size_t)unet.adm_channels(), 0.5f);
    y = be.upload(Tensor::wrap(yv.data(), {1, unet.adm_channels()}, DType::F32));
  }
  Tensor out = be.to_host(unet.forward(x, {999.f}, ctx, nullptr, nullptr, y.defined() ? &y : nullptr));
  if (!out.is_contiguous()) out = out.contiguous();
  double sum = 0;
  const int64_t k = std::min<int64_t>(out.numel(), n);
  for (int64_t i = 0; i < k; ++i) sum += (double)out.f32()[i] - 0.5;
  return sum / (double)(k ? k : 1) < -1.0;
}

void DiffusionPipeline::check_params(const GenerateParams& p) const {
  const int m = 8 * unet_->size_multiple();
  const std::string rule = std::string(model_family_name(family_)) + " U-Net downsamples the latent " +
                           std::to_string(unet_->size_multiple()) + "x";
  if (p.width % m) throw_error(ErrorCode::InvalidArgument, "width must be a multiple of " + std::to_string(m) +
                                                               " for this model (the " + rule + "), got " +
                                                               std::to_string(p.width));
  if (p.height % m) throw_error(ErrorCode::InvalidArgument, "height must be a multiple of " + std::to_string(m) +
                                                                " for this model (the " + rule + "), got " +
                                                                std::to_string(p.height));
  if ((p.decoder == "taesd" || p.preview_method == "taesd") && !taesd_)
    throw_error(ErrorCode::InvalidArgument,
                std::string(p.decoder == "taesd" ? "decoder" : "preview_method (previewMethod)") +
                    " 'taesd' needs a TAESD file: load the model with taesdPath (CLI: --taesd FILE)");
  const int C = unet_->out_channels();
  if (unet_->in_channels() != C && unet_->in_channels() != C + 5)
    throw_error(ErrorCode::Unsupported, "this U-Net takes " + std::to_string(unet_->in_channels()) +
                                            " input channels; only base (" + std::to_string(C) +
                                            ") and inpainting (" + std::to_string(C + 5) + ") models run");
  if (p.clip_skip > conditioner_->max_clip_skip())
    throw_error(ErrorCode::InvalidArgument, "clip_skip must be at most " + std::to_string(conditioner_->max_clip_skip()) +
                                                " (the text encoder's layer count), got " + std::to_string(p.clip_skip));
}

namespace {
constexpr int kVaeTile = 32;     // latent pixels per tile side (256 image pixels)
constexpr int kVaeOverlap = 8;   // latent pixels shared by neighbouring tiles (64 image pixels), blended linearly
// Encoder tiles: the same 256-pixel tiles and 64 pixels of overlap; the outer 2 latent pixels (16 image pixels)
// of a tile's side that borders another tile are dropped and the rest of the overlap (4 latent pixels) is blended
// linearly. Measured on the random-weight SD 1.5 checkpoint (a 256-pixel crop encoded alone against the whole
// 512-pixel image): the latent's error is 3-4 dB worse at distances 0 and 1 from the crop's border and flat from
// distance 2 on, where what differs is what the encoder computes over the whole image (group-norm statistics, the
// mid-block attention), which no overlap removes.
constexpr int kVaeEncOverlap = 8;
constexpr int kVaeEncMargin = 2;

// SDN_VAE_TILE=N (latent pixels, >= 8): the tile size of tiled VAE encode and decode, for tests and
// experiments (e.g. to tile a 256-pixel image); anything else: the default.
int vae_tile() {
  const char* e = std::getenv("SDN_VAE_TILE");
  if (e && *e) {
    char* end = nullptr;
    long v = std::strtol(e, &end, 10);
    if (end && *end == 0 && v >= 8 && v <= 4096) return (int)v;
  }
  return kVaeTile;
}

// Blend weight of pixel p of a tile n pixels long: a linear ramp over `ov` pixels at each side that borders another
// tile (sides on the image border keep full weight).
float ramp(int p, int n, bool first, bool last, int ov) {
  float w = 1.f;
  if (!first) w = std::min(w, ((float)p + 0.5f) / (float)ov);
  if (!last) w = std::min(w, ((float)(n - p) - 0.5f) / (float)ov);
  return std::max(w, 1e-3f);
}

// The same with the outer `margin` pixels of each inner side weighted 0 and the ramp over the next ov - 2 margin
// (the neighbour's ramp then ends where this one starts: the weights of two tiles sum to 1 across the overlap).
float ramp_cropped(int p, int n, bool first, bool last, int ov, int margin) {
  const float len = (float)std::max(1, ov - 2 * margin);
  float w = 1.f;
  if (!first) w = std::min(w, ((float)(p - margin) + 0.5f) / len);
  if (!last) w = std::min(w, ((float)(n - p - margin) - 0.5f) / len);
  return std::max(w, 0.f);
}

// Tile start positions covering [0, n) with tiles of `t` and at least `ov` overlap.
std::vector<int> tile_starts(int n, int t, int ov) {
  std::vector<int> s;
  if (n <= t) return {0};
  for (int p = 0;; p += t - ov) {
    if (p + t >= n) {
      s.push_back(n - t);
      break;
    }
    s.push_back(p);
  }
  return s;
}

// An out-of-memory error of a whole-image VAE pass, rethrown with the option that avoids it.
[[noreturn]] void rethrow_vae_oom(const Error& e, const char* what, int H, int W, bool tiled) {
  throw_error(ErrorCode::OutOfMemory,
              std::string(e.what()) + " (during the VAE " + what + " of a " + std::to_string(W) + "x" +
                  std::to_string(H) + " image" + (tiled ? ", in tiles" : "") + "): " +
                  (tiled ? "use a smaller image, vaeOnCpu: true (CLI --vae-on-cpu) or device 'cpu'"
                         : "load the model with vaeTiling: true (CLI --vae-tiling), vaeOnCpu: true (CLI "
                           "--vae-on-cpu) or device 'cpu'"));
}
}  // namespace

void DiffusionPipeline::trim() {
  store_->backend().trim();
  if (cpu_store_) cpu_store_->backend().trim();
}

bool DiffusionPipeline::tiles_vae(int h, int w) const {
  const int t = vae_tile();
  if (placement_.vae_tiling == VaeTiling::On) return h > t || w > t;
  if (placement_.vae_tiling == VaeTiling::Off || vae_be_->is_host()) return false;
  // the working set at full resolution, the same for the decoder and the encoder (their first/last level runs
  // 128 channels at the image size): about four live 128-channel f32 tensors of the image size
  const double need = 4.0 * 128.0 * 4.0 * (8.0 * h) * (8.0 * w);
  const DeviceInfo d = vae_be_->device_info();
  const MemoryStats m = vae_be_->memory_stats();
  const double free = d.memory_bytes > m.weights ? (double)(d.memory_bytes - m.weights) : 0.0;
  return d.memory_bytes > 0 && need > 0.5 * free;
}

std::vector<float> DiffusionPipeline::decode_planes(const std::vector<float>& x, int lh, int lw, int tile, int overlap) {
  Backend& be = *vae_be_;
  const int64_t plane = (int64_t)lh * lw;
  const int C = plane ? (int)((int64_t)x.size() / plane) : 0;
  const int H = lh * 8, W = lw * 8;
  // decodes latent rows [y0, y0+th) x columns [x0, x0+tw) -> host planes [3, 8th, 8tw]
  auto decode_region = [&](int y0, int x0, int th, int tw) {
    std::vector<float> crop((size_t)C * th * tw);
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < th; ++y)
        std::copy_n(x.data() + ((int64_t)c * lh + y0 + y) * lw + x0, tw, crop.data() + ((size_t)c * th + y) * tw);
    Tensor z = be.scale(be.upload(Tensor::wrap(crop.data(), {1, C, th, tw}, DType::F32)), 1.0f / latent_scale_);
    Tensor dec = vae_->decode(z);
    z = Tensor();
    if (dec.ndim != 4 || dec.shape[1] != 3 || dec.shape[2] != 8 * th || dec.shape[3] != 8 * tw)
      throw_error(ErrorCode::InvalidFile, "the VAE decoder turned a " + std::to_string(tw) + "x" + std::to_string(th) +
                                              " latent into " + dec.shape_str() + " instead of an RGB " +
                                              std::to_string(8 * tw) + "x" + std::to_string(8 * th) + " image");
    Tensor px = be.to_host(dec);
    if (!px.is_contiguous()) px = px.contiguous();
    return std::vector<float>(px.f32(), px.f32() + px.numel());
  };
  if (tile <= 0 || (lh <= tile && lw <= tile)) return decode_region(0, 0, lh, lw);
  const int th = std::min(tile, lh), tw = std::min(tile, lw);
  overlap = std::max(1, std::min(overlap, std::min(th, tw) / 2));  // tiles must advance (small SDN_VAE_TILE)
  const int ov = overlap * 8;
  std::vector<float> acc((size_t)3 * H * W, 0.f), wsum((size_t)H * W, 0.f);
  const std::vector<int> ys = tile_starts(lh, th, overlap), xs = tile_starts(lw, tw, overlap);
  for (int y0 : ys)
    for (int x0 : xs) {
      std::vector<float> d = decode_region(y0, x0, th, tw);
      const int TH = th * 8, TW = tw * 8;
      for (int py = 0; py < TH; ++py) {
        const float wy = ramp(py, TH, y0 == 0, y0 + th == lh, ov);
        for (int px = 0; px < TW; ++px) {
          const float wgt = wy * ramp(px, TW, x0 == 0, x0 + tw == lw, ov);
          const size_t o = (size_t)(y0 * 8 + py) * W + (size_t)(x0 * 8 + px);
          wsum[o] += wgt;
          for (int k = 0; k < 3; ++k) acc[(size_t)k * H * W + o] += wgt * d[((size_t)k * TH + py) * TW + px];
        }
      }
    }
  for (size_t o = 0; o < wsum.size(); ++o)
    for (int k = 0; k < 3; ++k) acc[(size_t)k * H * W + o] /= wsum[o];
  return acc;
}

std::vector<float> DiffusionPipeline::taesd_planes(const std::vector<float>& x, int lh, int lw) {
  // TAESD is small (64 channels): it runs whole, on the model's backend, on the diffusion latent itself
  Backend& be = store_->backend();
  const int C = unet_->out_channels();
  Tensor dec = taesd_->decode(upload_copy(be, x.data(), {1, C, lh, lw}));
  if (dec.ndim != 4 || dec.shape[1] != 3 || dec.shape[2] != 8 * lh || dec.shape[3] != 8 * lw)
    throw_error(ErrorCode::InvalidFile, "the TAESD decoder turned a " + std::to_string(lw) + "x" + std::to_string(lh) +
                                            " latent into " + dec.shape_str() + " instead of an RGB " +
                                            std::to_string(8 * lw) + "x" + std::to_string(8 * lh) + " image");
  Tensor px = be.to_host(dec);
  if (!px.is_contiguous()) px = px.contiguous();
  return std::vector<float>(px.f32(), px.f32() + px.numel());
}

Image DiffusionPipeline::decode(std::vector<float>& x, int lh, int lw, const GenerateParams& p, bool taesd) {
  // the VAE gives about [-1, 1]; TAESD gives about [0, 1]
  std::vector<float> px;
  if (taesd) {
    px = taesd_planes(x, lh, lw);
  } else {
    const bool tiled = tiles_decode(lh, lw);
    try {
      px = decode_planes(x, lh, lw, tiled ? vae_tile() : 0, kVaeOverlap);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::OutOfMemory || vae_be_->is_host()) throw;
      rethrow_vae_oom(e, "decode", 8 * lh, 8 * lw, tiled);
    }
  }
  x.clear();
  x.shrink_to_fit();
  check_finite(px.data(), px.size(), taesd ? "TAESD decoder" : "VAE decoder");
  Image im;
  im.width = p.width;
  im.height = p.height;
  im.channels = 3;
  im.data.resize((size_t)p.width * p.height * 3);
  const size_t plane = (size_t)p.width * p.height;
  if (px.size() != 3 * plane) throw_error(ErrorCode::Internal, "decode: unexpected image size");
  const float* src = px.data();
  for (size_t q = 0; q < plane; ++q)
    for (int k = 0; k < 3; ++k) {
      float v = taesd ? src[k * plane + q] : (src[k * plane + q] + 1.f) * 0.5f;
      v = std::min(1.f, std::max(0.f, v));
      if (!(v == v)) v = 0;  // NaN -> 0
      im.data[q * 3 + k] = (uint8_t)(v * 255.f);
    }
  return im;
}

std::vector<float> DiffusionPipeline::image_planes(const Image& im, const std::vector<float>* mask) {
  const size_t plane = (size_t)im.width * im.height;
  std::vector<float> d(3 * plane);
  for (size_t q = 0; q < plane; ++q) {
    const float keep = mask ? 1.f - (*mask)[q] : 1.f;
    for (int k = 0; k < 3; ++k) d[k * plane + q] = keep * (im.data[q * 3 + k] / 255.f * 2.f - 1.f);
  }
  return d;
}

std::vector<float> tiled_encode(const std::vector<float>& px, int H, int W, int tile, int overlap, int margin,
                                const RegionEncoder& encode, int* channels) {
  if (H <= 0 || W <= 0 || H % 8 || W % 8 || px.size() != (size_t)3 * H * W)
    throw_error(ErrorCode::Internal, "tiled_encode: the image must be [3, H, W] with H and W multiples of 8");
  const int lh = H / 8, lw = W / 8;
  int mc = 0;  // channels of the encoder's output (2C: mean and log-variance; C: mean only)
  // encodes image rows [8y0, 8(y0+th)) x columns [8x0, 8(x0+tw)) -> moments [mc, th, tw]
  auto encode_region = [&](int y0, int x0, int th, int tw) {
    const int TH = 8 * th, TW = 8 * tw;
    int c = 0;
    std::vector<float> m;
    if (TH == H && TW == W) {
      m = encode(px, TH, TW, c);
    } else {
      std::vector<float> crop((size_t)3 * TH * TW);
      for (int k = 0; k < 3; ++k)
        for (int y = 0; y < TH; ++y)
          std::copy_n(px.data() + ((size_t)k * H + 8 * y0 + y) * W + 8 * x0, TW, crop.data() + ((size_t)k * TH + y) * TW);
      m = encode(crop, TH, TW, c);
    }
    if (c <= 0 || m.size() != (size_t)c * th * tw)
      throw_error(ErrorCode::InvalidFile, "the VAE encoder turned a " + std::to_string(TW) + "x" + std::to_string(TH) +
                                              " image into " + std::to_string(m.size()) +
                                              " values instead of a latent of 1/8 its size");
    if (mc && c != mc) throw_error(ErrorCode::InvalidFile, "the VAE encoder's output channels changed between tiles");
    mc = c;
    return m;
  };
  std::vector<float> out;
  if (tile <= 0 || (lh <= tile && lw <= tile)) {
    out = encode_region(0, 0, lh, lw);
  } else {
    const int th = std::min(tile, lh), tw = std::min(tile, lw);
    const int ov = std::max(1, std::min(overlap, std::min(th, tw) / 2));  // tiles must advance
    const int mg = std::max(0, std::min(margin, (ov - 1) / 2));
    const std::vector<int> ys = tile_starts(lh, th, ov), xs = tile_starts(lw, tw, ov);
    std::vector<float> wsum((size_t)lh * lw, 0.f);
    for (int y0 : ys)
      for (int x0 : xs) {
        std::vector<float> t = encode_region(y0, x0, th, tw);
        if (out.empty()) out.assign((size_t)mc * lh * lw, 0.f);
        for (int py = 0; py < th; ++py) {
          const float wy = ramp_cropped(py, th, y0 == 0, y0 + th == lh, ov, mg);
          for (int qx = 0; qx < tw; ++qx) {
            const float wgt = wy * ramp_cropped(qx, tw, x0 == 0, x0 + tw == lw, ov, mg);
            if (wgt <= 0.f) continue;
            const size_t o = (size_t)(y0 + py) * lw + (size_t)(x0 + qx);
            wsum[o] += wgt;
            for (int c = 0; c < mc; ++c) out[(size_t)c * lh * lw + o] += wgt * t[((size_t)c * th + py) * tw + qx];
          }
        }
      }
    for (size_t o = 0; o < wsum.size(); ++o) {
      SDN_CHECK(wsum[o] > 0.f, "tiled VAE encode left a latent pixel uncovered");
      for (int c = 0; c < mc; ++c) out[(size_t)c * lh * lw + o] /= wsum[o];
    }
  }
  if (channels) *channels = mc;
  return out;
}

std::vector<float> DiffusionPipeline::encode_planes(const std::vector<float>& px, int H, int W, int tile, int overlap,
                                                    int margin, int* channels) {
  Backend& be = *vae_be_;
  const int C = unet_->out_channels();
  auto vae = [&](const std::vector<float>& crop, int TH, int TW, int& mc) {
    Tensor img = upload_copy(be, crop.data(), {1, 3, TH, TW});
    Tensor m = vae_->encode(img);
    img = Tensor();
    if (m.ndim != 4 || (m.shape[1] != 2 * C && m.shape[1] != C))
      throw_error(ErrorCode::InvalidFile, "the VAE encoder gives " + m.shape_str() + " instead of " +
                                              std::to_string(2 * C) + " channels (mean and log-variance)");
    // the callers place the latent in buffers of (H/8) x (W/8): any other size would read or write past them
    if (m.shape[0] != 1 || m.shape[2] * 8 != TH || m.shape[3] * 8 != TW)
      throw_error(ErrorCode::InvalidFile, "the VAE encoder turned a " + std::to_string(TW) + "x" + std::to_string(TH) +
                                              " image into " + m.shape_str() + " instead of a latent of 1/8 its size");
    mc = (int)m.shape[1];
    Tensor h = be.to_host(m);
    if (!h.is_contiguous()) h = h.contiguous();
    return std::vector<float>(h.f32(), h.f32() + h.numel());
  };
  return tiled_encode(px, H, W, tile, overlap, margin, vae, channels);
}

std::vector<float> DiffusionPipeline::encode_latent(const std::vector<float>& px, int H, int W, NoiseGenerator& gen) {
  const int C = unet_->out_channels();
  const int lh = H / 8, lw = W / 8;
  const bool tiled = tiles_encode(lh, lw);
  int mc = 0;
  std::vector<float> m;
  try {
    m = encode_planes(px, H, W, tiled ? vae_tile() : 0, kVaeEncOverlap, kVaeEncMargin, &mc);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::OutOfMemory || vae_be_->is_host()) throw;
    rethrow_vae_oom(e, "encode", H, W, tiled);
  }
  check_finite(m.data(), m.size(), "VAE encoder");
  const int64_t n = (int64_t)C * lh * lw;
  std::vector<float> z((size_t)n), eps((size_t)n);
  // the posterior sample, as the reference engine draws it (one randn of the latent's size from the seeded rng);
  // tiled or not, the moments cover the whole latent before the noise is drawn, so the draw is the same
  gen.randn(eps.data(), n);
  const float* mean = m.data();
  const float* logvar = mc == 2 * C ? m.data() + n : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    float v = mean[i];
    if (logvar) v += std::exp(0.5f * std::min(20.f, std::max(-30.f, logvar[i]))) * eps[(size_t)i];
    z[(size_t)i] = v * latent_scale_;
  }
  return z;
}

std::vector<Image> DiffusionPipeline::generate(const GenerateParams& params, const GenerateCallbacks& cb) {
  validate_params(params);
  check_params(params);
  WeightPrefetch prefetch({cpu_store_.get(), store_.get()});
  Backend& be = store_->backend();
  // adapters, before any work: <lora:...> tags leave the prompt, LoRAs are merged (only changed weights), the
  // ControlNet is loaded (kept while the same file is asked for)
  GenerateParams p = params;
  std::vector<std::string> warnings;
  {
    std::vector<LoraSpec> loras = p.loras;
    for (const LoraSpec& l : extract_lora_tags(p.prompt, p.lora_dir)) loras.push_back(l);
    loras_.apply(*store_, placement_.text_encoder_on_cpu ? cpu_store_.get() : nullptr, loras, model_family_name(family_), warnings);
  }
  if (!p.control_net.model.empty() && (!control_ || control_->path != p.control_net.model)) {
    control_.reset();  // the old one's memory first
    control_ = load_controlnet(p.control_net.model, be, *unet_, model_family_name(family_), unet_heads_,
                               unet_head_dim_);
  }
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
  if (taesd_) taesd_->set_abort_check(cb.should_abort);
  StateReset reset{[this] {
    unet_->set_abort_check({});
    vae_->set_abort_check({});
    conditioner_->set_abort_check({});
    if (taesd_) taesd_->set_abort_check({});
    denoiser_->clear();
    denoiser_->set_extra_channels(Tensor());
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
    if (p.cfg_scale != 1.0f) uncond = conditioner_->encode_negative(p.negative_prompt, p);
    denoiser_->set_conditioning(cond, uncond, p.cfg_scale);
  }
  if (releases(*te_be_)) {
    conditioner_->release();
    trim();  // cached activation blocks of one stage are the wrong sizes for the next
  }

  // 2. image conditioning (img2img, inpainting), as the reference engine does it: the rng seeded with the seed
  // draws the VAE posterior noise of the init image, then of the masked image (inpainting checkpoints).
  const int lh = p.height / 8, lw = p.width / 8, C = unet_->out_channels();
  const int64_t n = (int64_t)C * lh * lw;
  const size_t lplane = (size_t)lh * lw;
  const bool img2img = !p.init_image.data.empty();
  const bool inpaint_model = unet_->in_channels() == C + 5;
  std::vector<float> init_latent;   // empty: zeros (txt2img)
  std::vector<float> denoise_mask;  // [lh*lw]; empty: none. Outside it the latent is reset to init_latent.
  if (img2img || inpaint_model) {
    check_abort();
    std::vector<float> pixel_mask;  // [H*W] in [0, 1], 1 = repaint
    std::vector<float> latent_mask(lplane, 1.f);
    if (!p.mask.data.empty()) {
      const size_t plane = (size_t)p.width * p.height;
      pixel_mask.resize(plane);
      for (size_t q = 0; q < plane; ++q) pixel_mask[q] = p.mask.data[q * p.mask.channels] / 255.f;
      // latent mask: the largest mask value of each 8x8 pixel block
      for (int y = 0; y < lh; ++y)
        for (int x = 0; x < lw; ++x) {
          float m = 0;
          for (int dy = 0; dy < 8; ++dy)
            for (int dx = 0; dx < 8; ++dx) m = std::max(m, pixel_mask[(size_t)(y * 8 + dy) * p.width + x * 8 + dx]);
          latent_mask[(size_t)y * lw + x] = m;
        }
    }
    auto gen = make_noise_generator(p.rng, (uint64_t)seed);
    if (img2img) init_latent = encode_latent(image_planes(p.init_image, nullptr), p.height, p.width, *gen);
    if (inpaint_model) {
      // extra U-Net input: [mask (1), latent of the image with the masked part grey (C)]; zeros without an image
      std::vector<float> extra((size_t)(1 + C) * lplane, 0.f);
      std::copy(latent_mask.begin(), latent_mask.end(), extra.begin());
      if (img2img) {
        std::vector<float> ones;
        if (pixel_mask.empty()) ones.assign((size_t)p.width * p.height, 1.f);
        std::vector<float> masked =
            encode_latent(image_planes(p.init_image, pixel_mask.empty() ? &ones : &pixel_mask), p.height, p.width, *gen);
        std::copy(masked.begin(), masked.end(), extra.begin() + lplane);
      }
      denoiser_->set_extra_channels(upload_copy(be, extra.data(), {1, 1 + C, lh, lw}));
      if (!pixel_mask.empty()) {
        // the blend mask of inpainting checkpoints is the latent mask dilated by one latent pixel (3x3 max)
        denoise_mask.assign(lplane, 0.f);
        for (int y = 0; y < lh; ++y)
          for (int x = 0; x < lw; ++x) {
            float m = 0;
            for (int dy = -1; dy <= 1; ++dy)
              for (int dx = -1; dx <= 1; ++dx) {
                const int yy = y + dy, xx = x + dx;
                if (yy >= 0 && yy < lh && xx >= 0 && xx < lw) m = std::max(m, latent_mask[(size_t)yy * lw + xx]);
              }
            denoise_mask[(size_t)y * lw + x] = m;
          }
      }
    } else if (!pixel_mask.empty()) {
      denoise_mask = latent_mask;
    }
    if (releases(*vae_be_)) {
      vae_->release_encoder();
      trim();
    }
  }
  progress(Phase::Encode, 1, 1, 0);

  // 3. sampling, every image of the batch
  std::vector<float> sigmas = make_sigmas(*schedule_, p.scheduler, p.steps, model_family_name(family_));
  if (img2img && p.strength < 1.f) {
    // the schedule starts at step N - t - 1 of the N-step schedule, t = floor(N * strength) (stable-diffusion.cpp)
    int t_enc = (int)((float)p.steps * p.strength);
    if (t_enc >= p.steps) t_enc = p.steps - 1;
    if (t_enc < 0) t_enc = 0;
    sigmas.erase(sigmas.begin(), sigmas.begin() + (p.steps - t_enc - 1));
  }
  const int steps_run = (int)sigmas.size() - 1;
  {
    bool stream = stream_mode_ == 1;
    if (stream_mode_ < 0) {
      const double ram = (double)::sysconf(_SC_PHYS_PAGES) * (double)::sysconf(_SC_PAGESIZE);
      stream = (int64_t)steps_run * p.batch_count <= 1 || (ram > 0 && (double)unet_bytes_ > ram / 4);
    }
    unet_->set_stream_weights(stream);
  }
  // strength 0: the residuals would all be zero, so the ControlNet does not run (it was still loaded and checked)
  if (!p.control_net.model.empty() && p.control_net.strength > 0.f) {
    const ControlNetSpec& c = p.control_net;
    // control image RGB8 -> [1, 3, H, W] in [0, 1], as given (no preprocessing)
    std::vector<float> img((size_t)3 * c.image_width * c.image_height);
    const size_t plane = (size_t)c.image_width * c.image_height;
    for (size_t q = 0; q < plane; ++q)
      for (int k = 0; k < 3; ++k) img[k * plane + q] = c.image_rgb[q * 3 + k] / 255.0f;
    control_->model->set_abort_check(cb.should_abort);
    Tensor hint = control_->model->hint(
        be.upload(Tensor::wrap(img.data(), {1, 3, c.image_height, c.image_width}, DType::F32)));
    // steps i (of those that run) with start <= i/steps <= end (A1111's guidance start/end) -> the sigma range they evaluate
    float hi = -1.f, lo = 0.f;  // an evaluation at sigma applies the control when lo <= sigma <= hi
    for (int i = 0; i < steps_run; ++i) {
      const float f = (float)i / (float)steps_run;
      if (f < c.start - 1e-6f || f > c.end + 1e-6f) continue;
      if (hi < 0.f) hi = lo = sigmas[i];
      hi = std::max(hi, sigmas[i]);
      lo = std::min(lo, sigmas[i]);
    }
    if (hi > 0.f) denoiser_->set_control(control_->model.get(), hint, c.strength, lo, hi);
  }
  std::vector<std::vector<float>> latents;
  std::vector<int64_t> seeds;
  Denoiser model = [&](const std::vector<float>& x, float sigma, std::vector<float>& den) {
    denoiser_->denoise(x, sigma, lh, lw, den);
    if (!denoise_mask.empty()) {
      // keep the init image's latent outside the mask (every model; inpainting checkpoints too, as the reference)
      for (int c = 0; c < C; ++c)
        for (size_t q = 0; q < lplane; ++q) {
          const size_t i = (size_t)c * lplane + q;
          const float m = denoise_mask[q];
          den[i] = den[i] * m + init_latent[i] * (1.f - m);
        }
    }
  };
  auto preview = [&](const std::vector<float>& x) {
    if (p.preview_method != "taesd") return latent_preview(x, lh, lw);
    std::vector<float> copy = x;
    return decode(copy, lh, lw, p, true);
  };
  for (int img = 0; img < p.batch_count; ++img) {
    check_abort();
    const int64_t s = seed + img;
    auto gen = make_noise_generator(p.rng, (uint64_t)s);
    std::vector<float> x((size_t)n);
    gen->randn(x.data(), n);
    for (int64_t i = 0; i < n; ++i) x[(size_t)i] = (init_latent.empty() ? 0.f : init_latent[(size_t)i]) + x[(size_t)i] * sigmas[0];
    progress(Phase::Sample, 0, steps_run, img);
    run_sampler(
        p.sampler, model, x, sigmas, *gen,
        [&](int i, int steps) {
          const int done = i + 1;  // i is the 0-based index of the step just finished (sampling.h)
          progress(Phase::Sample, done, steps, img);
          if (cb.on_preview && p.preview_every > 0 && (done % p.preview_every == 0 || done == steps))
            cb.on_preview(done, preview(x));
          return !aborted();
        },
        -1.f, schedule_.get());
    latents.push_back(std::move(x));
    seeds.push_back(s);
  }
  denoiser_->clear();
  if (control_) control_->model->set_abort_check({});
  denoiser_->set_extra_channels(Tensor());
  if (releases(store_->backend())) {
    if (control_) control_->model->release();
    unet_->release();
    trim();
  }

  // 4. decode
  std::vector<Image> images;
  for (int img = 0; img < p.batch_count; ++img) {
    check_abort();
    progress(Phase::Decode, img, p.batch_count, img);
    images.push_back(decode(latents[img], lh, lw, p, p.decoder == "taesd"));
    images.back().seed = seeds[img];
    images.back().warnings = warnings;
    images.back().adapter_bytes = store_->merged_bytes() + (cpu_store_ ? cpu_store_->merged_bytes() : 0);
    progress(Phase::Decode, img + 1, p.batch_count, img);
  }
  if (releases(*vae_be_)) {
    vae_->release_decoder();
    trim();
  }
  return images;
}

}  // namespace sdn
