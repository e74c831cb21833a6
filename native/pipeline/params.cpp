// validate_params: the checks generate() runs before any work (also exposed to callers without a model).
#include <cmath>
#include <string>
#include <vector>

#include "samplers/sampling.h"
#include "sdn/sdn.h"

namespace sdn {

static bool contains(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}
static std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void validate_params(const GenerateParams& p) {
  auto bad = [](const std::string& m) { throw_error(ErrorCode::InvalidArgument, m); };
  if (p.width < 64 || p.width > 2048 || p.width % 8)
    bad("width must be a multiple of 8 between 64 and 2048, got " + std::to_string(p.width));
  if (p.height < 64 || p.height > 2048 || p.height % 8)
    bad("height must be a multiple of 8 between 64 and 2048, got " + std::to_string(p.height));
  if (p.steps < 1 || p.steps > 1000) bad("steps must be between 1 and 1000, got " + std::to_string(p.steps));
  if (!std::isfinite(p.cfg_scale)) bad("cfg_scale must be a finite number");
  if (p.cfg_scale < 0 || p.cfg_scale > 100) bad("cfg_scale must be between 0 and 100, got " + std::to_string(p.cfg_scale));
  if (!contains(sampler_names(), p.sampler))
    bad("sampler '" + p.sampler + "' is not known (use one of: " + join(sampler_names()) + ")");
  if (!contains(scheduler_names(), p.scheduler))
    bad("scheduler '" + p.scheduler + "' is not known (use one of: " + join(scheduler_names()) + ")");
  if (p.rng != "cuda" && p.rng != "philox" && p.rng != "cpu")
    bad("rng '" + p.rng + "' is not known (use cuda, philox or cpu)");
  if (p.clip_skip < 0 || p.clip_skip > 64)
    bad("clip_skip must be 0 (the model's default) or 1 to 64, got " + std::to_string(p.clip_skip));
  if (p.batch_count < 1 || p.batch_count > 64)
    bad("batch_count must be between 1 and 64, got " + std::to_string(p.batch_count));
  if (p.preview_every < 0) bad("preview_every must be 0 (off) or a positive step interval");
  if (p.preview_method != "latent" && p.preview_method != "taesd")
    bad("preview_method (previewMethod) '" + p.preview_method + "' is not known (use latent or taesd)");
  if (p.decoder != "vae" && p.decoder != "taesd") bad("decoder '" + p.decoder + "' is not known (use vae or taesd)");
  auto check_image = [&](const Image& im, const char* what, bool grey_ok) {
    if (im.width != p.width || im.height != p.height)
      bad(std::string(what) + " is " + std::to_string(im.width) + "x" + std::to_string(im.height) +
          " but the image to generate is " + std::to_string(p.width) + "x" + std::to_string(p.height) +
          " (resize it to width x height first; the Node API does this itself)");
    if (!(im.channels == 3 || (grey_ok && im.channels == 1)))
      bad(std::string(what) + " must have " + (grey_ok ? "1 or 3 channels" : "3 channels (RGB)") + ", got " +
          std::to_string(im.channels));
    if (im.data.size() != (size_t)im.width * (size_t)im.height * (size_t)im.channels)
      bad(std::string(what) + " has " + std::to_string(im.data.size()) + " bytes of pixel data instead of width * height * channels = " +
          std::to_string((size_t)im.width * im.height * im.channels));
  };
  const bool has_init = !p.init_image.data.empty() || p.init_image.width || p.init_image.height;
  const bool has_mask = !p.mask.data.empty() || p.mask.width || p.mask.height;
  if (has_init) check_image(p.init_image, "init_image (initImage, --init-img)", false);
  if (has_mask) {
    if (!has_init) bad("mask (--mask) needs an init image (initImage, --init-img) to repaint");
    check_image(p.mask, "mask (--mask)", true);
  }
  if (!std::isfinite(p.strength) || p.strength < 0 || p.strength > 1)
    bad("strength must be a number from 0 to 1, got " + std::to_string(p.strength));
  const size_t kMaxPrompt = 64 * 1024;
  if (p.prompt.size() > kMaxPrompt) bad("prompt is longer than 65536 bytes");
  if (p.negative_prompt.size() > kMaxPrompt) bad("negative_prompt is longer than 65536 bytes");
  if (p.loras.size() > 64) bad("at most 64 LoRAs at once (loras)");
  for (const LoraSpec& l : p.loras) {
    if (l.path.empty()) bad("a LoRA entry has no path (loras[].path)");
    if (!std::isfinite(l.weight) || std::fabs(l.weight) > 100)
      bad("LoRA weight must be a finite number in [-100, 100] (loras[].weight), got " + std::to_string(l.weight) +
          " for " + l.path);
  }
  const ControlNetSpec& c = p.control_net;
  if (!c.model.empty()) {
    if (!std::isfinite(c.strength) || c.strength < 0 || c.strength > 10)
      bad("controlNet.strength must be between 0 and 10, got " + std::to_string(c.strength));
    if (!std::isfinite(c.start) || !std::isfinite(c.end) || c.start < 0 || c.end > 1 || c.start > c.end)
      bad("controlNet.start and controlNet.end must satisfy 0 <= start <= end <= 1");
    if (c.image_rgb.empty()) bad("controlNet.image is required with controlNet.model (CLI --control-image)");
    if (c.image_width != p.width || c.image_height != p.height ||
        c.image_rgb.size() != (size_t)c.image_width * (size_t)c.image_height * 3)
      bad("the control image is " + std::to_string(c.image_width) + "x" + std::to_string(c.image_height) +
          " but the generation is " + std::to_string(p.width) + "x" + std::to_string(p.height) +
          ": give a control image of the output size (controlNet.image / --control-image)");
  } else if (!c.image_rgb.empty()) {
    bad("a control image was given without a ControlNet (controlNet.model / --control-net)");
  }
}

}  // namespace sdn
