// Noise schedules, the denoiser parameterisation, samplers and the seeded noise generators.
// All of it works on host float vectors: the pipeline wraps the U-Net (with CFG) as a Denoiser.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sdn {

// Seeded Gaussian noise, matching PyTorch's generators so seeds reproduce other tools' images.
class NoiseGenerator {
 public:
  virtual ~NoiseGenerator() = default;
  // Fills n standard-normal values, advancing the stream exactly as torch.randn(n) on that generator would.
  virtual void randn(float* out, int64_t n) = 0;
};
// name: "cuda" / "philox" (torch CUDA Philox4x32-10, A1111 GPU noise) or "cpu" (torch CPU MT19937, ComfyUI).
// Throws InvalidArgument for other names.
std::unique_ptr<NoiseGenerator> make_noise_generator(const std::string& name, uint64_t seed);

// The discrete DDPM schedule of SD1/SD2/SDXL (scaled-linear betas 0.00085..0.012, 1000 steps), or one given
// by a checkpoint's alphas_cumprod.
class DiscreteSchedule {
 public:
  DiscreteSchedule();                                     // the standard SD schedule
  explicit DiscreteSchedule(std::vector<float> alphas_cumprod);
  const std::vector<float>& sigmas() const { return sigmas_; }  // 1000 values, ascending
  float sigma_min() const { return sigmas_.front(); }
  float sigma_max() const { return sigmas_.back(); }
  float sigma_to_t(float sigma) const;  // fractional timestep (log-sigma interpolation)
  float t_to_sigma(float t) const;
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }

 private:
  std::vector<float> alphas_cumprod_, sigmas_, log_sigmas_;
};

// Sigmas for `steps` steps, descending, with a final 0 appended (steps + 1 values).
// scheduler: "discrete" | "karras" | "exponential" (throws InvalidArgument otherwise).
std::vector<float> make_sigmas(const DiscreteSchedule& schedule, const std::string& scheduler, int steps);

enum class Prediction { Eps, V };

// The model wrapped for k-diffusion samplers: given x (noise std sigma) and sigma, returns the denoised estimate.
// The pipeline implements it: scales x by c_in, calls the U-Net at t = sigma_to_t(sigma) (with CFG), and applies
// c_skip/c_out for the prediction type (helpers below).
using Denoiser = std::function<void(const std::vector<float>& x, float sigma, std::vector<float>& denoised)>;

struct DenoiserScalings {
  float c_skip, c_out, c_in;
};
DenoiserScalings denoiser_scalings(Prediction p, float sigma);

// Runs `sampler` ("euler", "euler_a", "heun", "dpm2", "dpm++2m", "dpm++2s_a", "lcm", "ddim_trailing") over
// `sigmas`, updating x in place (x starts as noise * sigmas[0]). Ancestral/LCM noise comes from `noise`.
// on_step(i, steps) is called after each step; returning false aborts (throws Error Aborted).
void run_sampler(const std::string& sampler, const Denoiser& model, std::vector<float>& x,
                 const std::vector<float>& sigmas, NoiseGenerator& noise,
                 const std::function<bool(int, int)>& on_step);

// Names accepted by run_sampler / make_sigmas (for validation messages).
const std::vector<std::string>& sampler_names();
const std::vector<std::string>& scheduler_names();

}  // namespace sdn
