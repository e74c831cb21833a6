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
// "cuda": each randn call is one torch.randn on a freshly seeded CUDA generator's stream (Philox offset advances
// by one per call; exact for n up to the GPU's thread count, ~100k+ values, which covers SD latents).
// "cpu": torch CPU MT19937 incl. its separate paths for n >= 16 (float, groups of 16) and n < 16 (double).
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
  // A checkpoint's own schedule: 2..100000 strictly decreasing values in (0, 1); a final exact 0
  // (zero-terminal-SNR) is replaced by 2^-24. Throws InvalidArgument otherwise.
  explicit DiscreteSchedule(std::vector<float> alphas_cumprod);
  const std::vector<float>& sigmas() const { return sigmas_; }  // T (normally 1000) values, ascending
  float sigma_min() const { return sigmas_.front(); }
  float sigma_max() const { return sigmas_.back(); }
  // Fractional timestep by log-sigma interpolation (k-diffusion CompVisDenoiser / sd.cpp): t in [0, T-1],
  // clamped at both ends; sigma <= 0 gives 0. NaN throws InvalidArgument.
  float sigma_to_t(float sigma) const;
  // exp of the linear interpolation of log sigmas at t (clamped to [0, T-1]). NaN throws InvalidArgument.
  float t_to_sigma(float t) const;
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }

 private:
  std::vector<float> alphas_cumprod_, sigmas_, log_sigmas_;
};

// Sigmas for `steps` steps (1..10000), descending, with a final 0 appended (steps + 1 values); float32 arithmetic as
// in the reference engine (stable-diffusion.cpp). scheduler (throws InvalidArgument otherwise):
//   "discrete"    t = linspace(T-1, 0, steps), sigma = t_to_sigma(t)          (sd.cpp default for SD models)
//   "karras"      rho = 7 between sigma_min and sigma_max
//   "exponential" log-linear between sigma_max and sigma_min
//   "simple"      sigmas[T-1 - floor(i*T/steps)]                              (sd.cpp default for ddim_trailing)
//   "sgm_uniform" t = linspace(T-1, 0, steps+1)[0..steps-1]
//   "lcm"         t = (50 - floor(i*50/steps))*(T/50) - 1                     (sd.cpp default for lcm and tcd)
//   "ays"         Align Your Steps: NVIDIA's 11-point sigma table for the family (SD1.5 table for "sd1" and
//                 "sd2" -- no SD2 table was published --, SDXL table for "sdxl"), interpolated linearly in
//                 log sigma to steps + 1 points over a uniform grid, the last point set to 0 (sd.cpp's rule; the
//                 tables assume the standard schedule and ignore a checkpoint's own alphas_cumprod)
// With steps = 1 every scheduler gives [sigma_max-ish first value, 0] (karras/exponential: exactly sigma_max).
// family: "sd1", "sd2" or "sdxl" (only "ays" uses it).
std::vector<float> make_sigmas(const DiscreteSchedule& schedule, const std::string& scheduler, int steps,
                               const std::string& family = "sd1");

enum class Prediction { Eps, V };

// The model wrapped for k-diffusion samplers: given x (noise std sigma) and sigma, returns the denoised estimate.
// The pipeline implements it: scales x by c_in, calls the U-Net at t = sigma_to_t(sigma) (with CFG), and applies
// c_skip/c_out for the prediction type (helpers below).
using Denoiser = std::function<void(const std::vector<float>& x, float sigma, std::vector<float>& denoised)>;

struct DenoiserScalings {
  float c_skip, c_out, c_in;
};
DenoiserScalings denoiser_scalings(Prediction p, float sigma);

// Runs `sampler` ("euler", "euler_a", "heun", "dpm2", "dpm++2m", "dpm++2s_a", "lcm", "ddim_trailing", "ddim",
// "ipndm", "tcd") over
// `sigmas` (all > 0 except the last, which may be 0), updating x in place (x starts as noise * sigmas[0]).
// The loops follow the reference engine (stable-diffusion.cpp 97d2990), float32 throughout:
//  * noise comes from `noise`, one randn(x.size()) per step where the sampler adds noise, and only then:
//    euler_a when sigma_up > 0 and sigmas[i+1] > 0; dpm++2s_a and lcm when sigmas[i+1] > 0. Use the generator
//    that drew the initial latent (so per-step draws continue its stream, as A1111 GPU seeds and sd.cpp do).
//  * lcm: x = D(x, sigma_i), then + z * sigmas[i+1] (plain denoiser, no LCM boundary scalings).
//  * ddim_trailing: DDIM in sigma form = Euler ancestral with eta 0 (deterministic, no draws); pair it with the
//    "simple" scheduler to get sd.cpp's ddim_trailing. "ddim" is the same sampler (DDIM on whatever schedule is
//    chosen; with "simple" or "sgm_uniform" it uses trailing timesteps as Lightning/Hyper/Turbo models need).
//  * ipndm: improved pseudo-numerical (Adams-Bashforth) steps on d = (x - D)/sigma with the fixed coefficients
//    of orders 1..4 (order = min(step + 1, 4)): x += dt * (d), (3d - d1)/2, (23d - 16d1 + 5d2)/12,
//    (55d - 59d1 + 37d2 - 9d3)/24, d1..d3 the previous steps' d.
//  * tcd: Trajectory Consistency Distillation's strategic stochastic sampling with gamma = eta (default 0.3), in
//    sigma form: x0 = D(x, sigma_i), eps = (x - x0)/sigma_i; sigma_s = schedule sigma at timestep
//    floor((1 - gamma) * t(sigma_{i+1})); x = x0 + sigma_s * eps; then (gamma > 0, not the last step)
//    x += sqrt(sigma_{i+1}^2 - sigma_s^2) * z. The last step returns x0. Needs `schedule` (sigma <-> t). Use it
//    with the "lcm" scheduler (TCD's timesteps) at cfg ~1.
//    (sd.cpp's last step keeps sqrt(1 - alphas_cumprod[0]) * eps = 0.03 * eps of noise: a difference far below
//    what a test image can show.)
//  * eta: < 0 (default) = the sampler's default (1 for euler_a and dpm++2s_a, 0 for ddim_trailing); other
//    samplers ignore it. eta = 0 makes euler_a deterministic; eta > 0 gives ddim_trailing DDIM(eta) noise.
// on_step(i, steps) is called after each step with the 0-based index i of the step just completed (0..steps-1);
// returning false aborts (throws Error Aborted). An empty std::function is allowed. Throws InvalidArgument for
// unknown names, bad sigmas, an empty x or an empty model.
//  * dpm2 uses the sigmas as given (A1111 instead builds steps+1 sigmas and drops the second-to-last one).
//  * dpm2 / heun / dpm++2s_a call the model twice per step except on a step that ends at sigma 0.
void run_sampler(const std::string& sampler, const Denoiser& model, std::vector<float>& x,
                 const std::vector<float>& sigmas, NoiseGenerator& noise,
                 const std::function<bool(int, int)>& on_step, float eta = -1.f,
                 const DiscreteSchedule* schedule = nullptr);

// Names accepted by run_sampler / make_sigmas (for validation messages).
const std::vector<std::string>& sampler_names();
const std::vector<std::string>& scheduler_names();

}  // namespace sdn
