// Noise schedules, denoiser scalings and the k-diffusion style samplers, following the reference engine
// (stable-diffusion.cpp 97d2990) where it differs from A1111: float32 schedule arithmetic, its discrete/karras/
// exponential/simple/sgm_uniform/lcm schedules, and its sampler loops (noise draws only where it draws them).
#include <cmath>
#include <limits>

#include "samplers/sampling.h"
#include "sdn/error.h"

namespace sdn {
namespace {

constexpr int kMaxSteps = 10000;

std::vector<float> standard_alphas_cumprod() {
  // scaled-linear betas 0.00085 .. 0.012 over 1000 steps; cumulative product in float64, stored as float32
  // (LDM / A1111; the reference engine's float32 product differs by ~1e-6 relative).
  std::vector<float> a(1000);
  const double s0 = std::sqrt(0.00085), s1 = std::sqrt(0.012);
  double prod = 1.0;
  for (int i = 0; i < 1000; i++) {
    double b = s0 + (s1 - s0) * i / 999.0;
    prod *= 1.0 - b * b;
    a[i] = (float)prod;
  }
  return a;
}

void check_finite(float v, const char* what) {
  if (!std::isfinite(v)) throw_error(ErrorCode::InvalidArgument, std::string(what) + " is not a finite number");
}

}  // namespace

DiscreteSchedule::DiscreteSchedule() : DiscreteSchedule(standard_alphas_cumprod()) {}

DiscreteSchedule::DiscreteSchedule(std::vector<float> alphas_cumprod) : alphas_cumprod_(std::move(alphas_cumprod)) {
  const size_t n = alphas_cumprod_.size();
  if (n < 2 || n > 100000)
    throw_error(ErrorCode::InvalidArgument,
                "alphas_cumprod must have between 2 and 100000 values (SD checkpoints have 1000), got " +
                    std::to_string(n));
  sigmas_.resize(n);
  log_sigmas_.resize(n);
  for (size_t i = 0; i < n; i++) {
    float& a = alphas_cumprod_[i];
    // zero-terminal-SNR schedules end in exactly 0 (sigma = inf): use 2^-24 there, as diffusers' samplers do
    if (a == 0.f && i + 1 == n) a = 1.0f / 16777216.0f;
    if (!(a > 0.f && a < 1.f))
      throw_error(ErrorCode::InvalidArgument,
                  "alphas_cumprod[" + std::to_string(i) + "] = " + std::to_string(a) + " is outside (0, 1)");
    if (i && !(a < alphas_cumprod_[i - 1]))
      throw_error(ErrorCode::InvalidArgument, "alphas_cumprod must be strictly decreasing (index " +
                                                  std::to_string(i) + ")");
    sigmas_[i] = std::sqrt((1.f - a) / a);
    log_sigmas_[i] = std::log(sigmas_[i]);
  }
}

float DiscreteSchedule::sigma_to_t(float sigma) const {
  if (std::isnan(sigma)) throw_error(ErrorCode::InvalidArgument, "sigma_to_t: sigma is NaN");
  const int n = (int)log_sigmas_.size();
  if (sigma <= 0.f) return 0.f;
  float ls = std::log(sigma);
  int low = 0;
  for (int i = 0; i < n; i++)
    if (ls - log_sigmas_[i] >= 0) low++;
  low = std::min(std::max(low - 1, 0), n - 2);
  int high = low + 1;
  float lo = log_sigmas_[low], hi = log_sigmas_[high];
  float w = (lo - ls) / (lo - hi);
  w = std::max(0.f, std::min(1.f, w));
  return (1.0f - w) * (float)low + w * (float)high;
}

float DiscreteSchedule::t_to_sigma(float t) const {
  if (std::isnan(t)) throw_error(ErrorCode::InvalidArgument, "t_to_sigma: t is NaN");
  const float tmax = (float)(log_sigmas_.size() - 1);
  t = std::max(0.f, std::min(tmax, t));
  int lo = (int)std::floor(t), hi = (int)std::ceil(t);
  float w = t - (float)lo;
  float ls = (1.0f - w) * log_sigmas_[lo] + w * log_sigmas_[hi];
  return std::exp(ls);
}

namespace {
// Align Your Steps noise levels (NVIDIA, "Align Your Steps", 10-step schedules, 11 points incl. sigma_min).
const float kAysSd1[11] = {14.6146412293f, 6.4745760956f, 3.8636745985f, 2.6946151520f, 1.8841921177f,
                           1.3943805092f,  0.9642583904f, 0.6523686016f, 0.3977456272f, 0.1515232662f,
                           0.0291671582f};
const float kAysSdxl[11] = {14.6146412293f, 6.3184485287f, 3.7681790315f, 2.1811480769f, 1.3405244945f,
                            0.8620721141f,  0.5550693289f, 0.3798540708f, 0.2332364134f, 0.1114188177f,
                            0.0291671582f};

// The table (descending) resampled to m points: log sigma interpolated linearly over a uniform [0, 1] grid.
std::vector<float> log_linear_resample(const float* table, int n, int m) {
  std::vector<float> out((size_t)m);
  for (int i = 0; i < m; i++) {
    double u = m == 1 ? 0.0 : (double)i / (double)(m - 1) * (double)(n - 1);
    int j = std::min((int)std::floor(u), n - 2);
    double f = u - j;
    double l = (1.0 - f) * std::log((double)table[j]) + f * std::log((double)table[j + 1]);
    out[(size_t)i] = (float)std::exp(l);
  }
  return out;
}
}  // namespace

std::vector<float> make_sigmas(const DiscreteSchedule& schedule, const std::string& scheduler, int steps,
                               const std::string& family) {
  if (steps < 1 || steps > kMaxSteps)
    throw_error(ErrorCode::InvalidArgument,
                "steps must be between 1 and " + std::to_string(kMaxSteps) + ", got " + std::to_string(steps));
  const int T = (int)schedule.sigmas().size();
  const float smin = schedule.sigma_min(), smax = schedule.sigma_max();
  const uint32_t n = (uint32_t)steps;
  std::vector<float> s;
  s.reserve(n + 1);
  if (scheduler == "discrete") {
    const int tmax = T - 1;
    if (n == 1) {
      s.push_back(schedule.t_to_sigma((float)tmax));
    } else {
      float step = (float)tmax / (float)(n - 1);
      for (uint32_t i = 0; i < n; i++) s.push_back(schedule.t_to_sigma((float)tmax - step * (float)i));
    }
  } else if (scheduler == "karras") {
    const float rho = 7.f;
    float lo = std::max(smin, 1e-6f);
    float min_inv = std::pow(lo, 1.f / rho), max_inv = std::pow(smax, 1.f / rho);
    for (uint32_t i = 0; i < n; i++) {
      // n == 1: i/(n-1) is 0/0 in the reference; use the first point (sigma_max)
      float f = n == 1 ? 0.f : (float)i / ((float)n - 1.f);
      s.push_back(std::pow(max_inv + f * (min_inv - max_inv), rho));
    }
  } else if (scheduler == "exponential") {
    float lmin = std::log(smin), lmax = std::log(smax);
    float step = n == 1 ? 0.f : (lmax - lmin) / (float)(n - 1);
    for (uint32_t i = 0; i < n; i++) s.push_back(std::exp(lmax - step * (float)i));
  } else if (scheduler == "simple") {
    float factor = (float)T / (float)n;
    for (uint32_t i = 0; i < n; i++) {
      int idx = T - 1 - (int)((float)i * factor);
      s.push_back(schedule.t_to_sigma((float)std::max(idx, 0)));
    }
  } else if (scheduler == "sgm_uniform") {
    // t = linspace(T-1, 0, n+1)[0..n-1]
    const float tmax = (float)(T - 1);
    float step = tmax / (float)n;
    for (uint32_t i = 0; i < n; i++) s.push_back(schedule.t_to_sigma(tmax - step * (float)i));
  } else if (scheduler == "lcm") {
    const int original_steps = 50, k = T / original_steps;
    for (uint32_t i = 0; i < n; i++) {
      int index = (int)((i * (uint32_t)original_steps) / n);
      s.push_back(schedule.t_to_sigma((float)((original_steps - index) * k - 1)));
    }
  } else if (scheduler == "ays") {
    if (family != "sd1" && family != "sd2" && family != "sdxl")
      throw_error(ErrorCode::InvalidArgument, "the ays scheduler has tables for sd1, sd2 and sdxl models, not '" +
                                                  family + "'");
    const float* table = family == "sdxl" ? kAysSdxl : kAysSd1;
    s = n == 10 ? std::vector<float>(table, table + 11) : log_linear_resample(table, 11, (int)n + 1);
    s.back() = 0.f;
    return s;
  } else {
    throw_error(ErrorCode::InvalidArgument,
                "unknown scheduler '" + scheduler +
                    "' (use discrete, karras, exponential, simple, sgm_uniform, lcm or ays)");
  }
  s.push_back(0.f);
  return s;
}

DenoiserScalings denoiser_scalings(Prediction p, float sigma) {
  const float sd = 1.0f;  // sigma_data
  DenoiserScalings r;
  if (p == Prediction::V) {
    r.c_skip = sd * sd / (sigma * sigma + sd * sd);
    r.c_out = -sigma * sd / std::sqrt(sigma * sigma + sd * sd);
  } else {
    r.c_skip = 1.0f;
    r.c_out = -sigma;
  }
  r.c_in = 1.0f / std::sqrt(sigma * sigma + sd * sd);
  return r;
}

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> v = {"euler", "euler_a", "heun",          "dpm2", "dpm++2m", "dpm++2s_a",
                                             "lcm",   "ddim",    "ddim_trailing", "ipndm", "tcd"};
  return v;
}
const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> v = {"discrete", "karras", "exponential", "simple", "sgm_uniform", "lcm",
                                             "ays"};
  return v;
}

namespace {

// sigma_down / sigma_up of an ancestral step (k-diffusion get_ancestral_step, float32 as in the reference).
void ancestral_step(float from, float to, float eta, float* down, float* up) {
  *up = 0.f;
  *down = to;
  if (eta <= 0.f) return;
  float f2 = from * from, t2 = to * to;
  if (f2 > 0.f) {
    float term = t2 * (f2 - t2) / f2;
    *up = std::min(to, eta * std::sqrt(std::max(term, 0.f)));
  }
  float d2 = t2 - *up * *up;
  *down = d2 > 0.f ? std::sqrt(d2) : 0.f;
}

class Runner {
 public:
  Runner(const Denoiser& model, std::vector<float>& x, const std::vector<float>& sigmas, NoiseGenerator& noise,
         const std::function<bool(int, int)>& on_step)
      : model_(model), x_(x), sigmas_(sigmas), noise_(noise), on_step_(on_step), n_(x.size()) {}

  int steps() const { return (int)sigmas_.size() - 1; }

  const std::vector<float>& denoise(const std::vector<float>& x, float sigma, std::vector<float>& out) {
    out.assign(n_, 0.f);
    model_(x, sigma, out);
    SDN_CHECK(out.size() == n_, "denoiser returned " + std::to_string(out.size()) + " values for " +
                                    std::to_string(n_));
    return out;
  }
  void add_noise(float scale) {
    z_.resize(n_);
    noise_.randn(z_.data(), (int64_t)n_);
    for (size_t k = 0; k < n_; k++) x_[k] += z_[k] * scale;
  }
  void step_done(int i) {
    if (on_step_ && !on_step_(i, steps())) throw_error(ErrorCode::Aborted, "sampling aborted by the caller");
  }

  const Denoiser& model_;
  std::vector<float>& x_;
  const std::vector<float>& sigmas_;
  NoiseGenerator& noise_;
  const std::function<bool(int, int)>& on_step_;
  size_t n_;
  std::vector<float> den_, den2_, x2_, z_, old_;
};

void euler(Runner& r) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], dt = r.sigmas_[i + 1] - s;
    const auto& den = r.denoise(x, s, r.den_);
    for (size_t k = 0; k < r.n_; k++) x[k] += ((x[k] - den[k]) / s) * dt;
    r.step_done(i);
  }
}

// Euler ancestral; with eta == 0 it is DDIM (eta 0) in sigma form, which is how ddim_trailing runs.
void euler_ancestral(Runner& r, float eta) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    const auto& den = r.denoise(x, s, r.den_);
    if (to == 0.f) {
      x = den;
    } else if (eta == 0.f) {
      float ratio = to / s;
      for (size_t k = 0; k < r.n_; k++) x[k] = ratio * x[k] + (1.0f - ratio) * den[k];
    } else {
      float down, up;
      ancestral_step(s, to, eta, &down, &up);
      float ratio = down / s;
      for (size_t k = 0; k < r.n_; k++) x[k] = ratio * x[k] + (1.0f - ratio) * den[k];
      if (up > 0.f) r.add_noise(up);
    }
    r.step_done(i);
  }
}

void heun(Runner& r) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1], dt = to - s;
    const auto& den = r.denoise(x, s, r.den_);
    if (to == 0.f) {
      for (size_t k = 0; k < r.n_; k++) x[k] += ((x[k] - den[k]) / s) * dt;
    } else {
      r.x2_.resize(r.n_);
      for (size_t k = 0; k < r.n_; k++) r.x2_[k] = x[k] + ((x[k] - den[k]) / s) * dt;
      const auto& den2 = r.denoise(r.x2_, to, r.den2_);
      for (size_t k = 0; k < r.n_; k++) {
        float d = (x[k] - den[k]) / s;
        float d2 = (r.x2_[k] - den2[k]) / to;
        x[k] += ((d + d2) / 2.0f) * dt;
      }
    }
    r.step_done(i);
  }
}

void dpm2(Runner& r) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    const auto& den = r.denoise(x, s, r.den_);
    if (to == 0.f) {
      for (size_t k = 0; k < r.n_; k++) x[k] += ((x[k] - den[k]) / s) * (to - s);
    } else {
      float mid = std::exp(0.5f * (std::log(s) + std::log(to)));
      float dt1 = mid - s, dt2 = to - s;
      r.x2_.resize(r.n_);
      for (size_t k = 0; k < r.n_; k++) r.x2_[k] = x[k] + ((x[k] - den[k]) / s) * dt1;
      const auto& den2 = r.denoise(r.x2_, mid, r.den2_);
      for (size_t k = 0; k < r.n_; k++) x[k] += ((r.x2_[k] - den2[k]) / mid) * dt2;
    }
    r.step_done(i);
  }
}

void dpmpp_2m(Runner& r) {
  auto& x = r.x_;
  r.old_.assign(r.n_, 0.f);
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    const auto& den = r.denoise(x, s, r.den_);
    float t = -std::log(s), t_next = -std::log(to);  // t_next = +inf when to == 0
    float h = t_next - t;
    float a = to / s;
    float b = std::exp(-h) - 1.f;
    if (i == 0 || to == 0.f) {
      for (size_t k = 0; k < r.n_; k++) x[k] = a * x[k] - b * den[k];
    } else {
      float h_last = t - (-std::log(r.sigmas_[i - 1]));
      float rr = h_last / h;
      float c1 = 1.f + 1.f / (2.f * rr), c2 = 1.f / (2.f * rr);
      for (size_t k = 0; k < r.n_; k++) x[k] = a * x[k] - b * (c1 * den[k] - c2 * r.old_[k]);
    }
    r.old_ = den;
    r.step_done(i);
  }
}

void dpmpp_2s_ancestral(Runner& r, float eta) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    const auto& den = r.denoise(x, s, r.den_);
    float down, up;
    ancestral_step(s, to, eta, &down, &up);
    if (down == 0.f) {
      x = den;
    } else {
      float t = -std::log(s), t_next = -std::log(down);
      float h = t_next - t;
      float sm = std::exp(-(t + 0.5f * h));
      float st = std::exp(-t);
      r.x2_.resize(r.n_);
      float c = std::exp(-h * 0.5f) - 1.f;
      for (size_t k = 0; k < r.n_; k++) r.x2_[k] = (sm / st) * x[k] - c * den[k];
      const auto& den2 = r.denoise(r.x2_, sm, r.den2_);
      float ratio = std::exp(-t_next) / st, c2 = std::exp(-h) - 1.f;
      for (size_t k = 0; k < r.n_; k++) x[k] = ratio * x[k] - c2 * den2[k];
    }
    if (to > 0.f) r.add_noise(up);
    r.step_done(i);
  }
}

void lcm(Runner& r) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    r.denoise(x, s, r.den_);
    x = r.den_;
    if (to > 0.f) r.add_noise(to);
    r.step_done(i);
  }
}

// iPNDM: Adams-Bashforth steps of order min(i + 1, 4) on d with the fixed coefficients.
void ipndm(Runner& r) {
  auto& x = r.x_;
  std::vector<std::vector<float>> hist;  // previous d's, oldest first (at most 3)
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], dt = r.sigmas_[i + 1] - s;
    const auto& den = r.denoise(x, s, r.den_);
    std::vector<float> d(r.n_);
    for (size_t k = 0; k < r.n_; k++) d[k] = (x[k] - den[k]) / s;
    const size_t h = hist.size();
    if (h == 0) {
      for (size_t k = 0; k < r.n_; k++) x[k] += dt * d[k];
    } else if (h == 1) {
      const auto& d1 = hist[0];
      for (size_t k = 0; k < r.n_; k++) x[k] += dt * (3.f * d[k] - d1[k]) / 2.f;
    } else if (h == 2) {
      const auto &d1 = hist[1], &d2 = hist[0];
      for (size_t k = 0; k < r.n_; k++) x[k] += dt * (23.f * d[k] - 16.f * d1[k] + 5.f * d2[k]) / 12.f;
    } else {
      const auto &d1 = hist[2], &d2 = hist[1], &d3 = hist[0];
      for (size_t k = 0; k < r.n_; k++)
        x[k] += dt * (55.f * d[k] - 59.f * d1[k] + 37.f * d2[k] - 9.f * d3[k]) / 24.f;
    }
    if (hist.size() == 3) hist.erase(hist.begin());
    hist.push_back(std::move(d));
    r.step_done(i);
  }
}

// TCD (gamma = eta) in sigma form; see sampling.h.
void tcd(Runner& r, float gamma, const DiscreteSchedule& sched) {
  auto& x = r.x_;
  for (int i = 0; i < r.steps(); i++) {
    float s = r.sigmas_[i], to = r.sigmas_[i + 1];
    const auto& den = r.denoise(x, s, r.den_);
    if (to == 0.f) {
      x = den;
    } else {
      float t_next = sched.sigma_to_t(to);
      float t_s = std::floor((1.f - gamma) * t_next);
      float sigma_s = sched.t_to_sigma(t_s);
      float ratio = sigma_s / s;
      for (size_t k = 0; k < r.n_; k++) x[k] = den[k] + ratio * (x[k] - den[k]);
      if (gamma > 0.f) {
        float var = to * to - sigma_s * sigma_s;
        if (var > 0.f) {
          r.add_noise(std::sqrt(var));
        } else {
          r.add_noise(0.f);  // keep the draw count (one per non-final step) independent of rounding
        }
      }
    }
    r.step_done(i);
  }
}

}  // namespace

void run_sampler(const std::string& sampler, const Denoiser& model, std::vector<float>& x,
                 const std::vector<float>& sigmas, NoiseGenerator& noise,
                 const std::function<bool(int, int)>& on_step, float eta, const DiscreteSchedule* schedule) {
  bool known = false;
  for (const auto& s : sampler_names()) known |= s == sampler;
  if (!known)
    throw_error(ErrorCode::InvalidArgument,
                "unknown sampler '" + sampler +
                    "' (use euler, euler_a, heun, dpm2, dpm++2m, dpm++2s_a, lcm, ddim, ddim_trailing, ipndm or tcd)");
  if (sigmas.size() < 2)
    throw_error(ErrorCode::InvalidArgument, "sigmas must hold at least 2 values (steps + 1), got " +
                                                std::to_string(sigmas.size()));
  for (size_t i = 0; i < sigmas.size(); i++) {
    check_finite(sigmas[i], "a sigma");
    bool last = i + 1 == sigmas.size();
    if (last ? sigmas[i] < 0.f : !(sigmas[i] > 0.f))
      throw_error(ErrorCode::InvalidArgument, "sigma " + std::to_string(i) + " = " + std::to_string(sigmas[i]) +
                                                  (last ? " is negative" : " must be > 0 (only the last may be 0)"));
  }
  if (x.empty()) throw_error(ErrorCode::InvalidArgument, "run_sampler: empty latent");
  if (!model) throw_error(ErrorCode::InvalidArgument, "run_sampler: no denoiser");
  if (std::isnan(eta)) throw_error(ErrorCode::InvalidArgument, "run_sampler: eta is NaN");

  Runner r(model, x, sigmas, noise, on_step);
  if (sampler == "euler") {
    euler(r);
  } else if (sampler == "euler_a") {
    euler_ancestral(r, eta < 0.f ? 1.f : eta);
  } else if (sampler == "ddim_trailing" || sampler == "ddim") {
    euler_ancestral(r, eta < 0.f ? 0.f : eta);
  } else if (sampler == "heun") {
    heun(r);
  } else if (sampler == "dpm2") {
    dpm2(r);
  } else if (sampler == "dpm++2m") {
    dpmpp_2m(r);
  } else if (sampler == "dpm++2s_a") {
    dpmpp_2s_ancestral(r, eta < 0.f ? 1.f : eta);
  } else if (sampler == "ipndm") {
    ipndm(r);
  } else if (sampler == "tcd") {
    if (!schedule) throw_error(ErrorCode::InvalidArgument, "run_sampler: the tcd sampler needs the noise schedule");
    const float gamma = eta < 0.f ? 0.3f : eta;
    if (gamma > 1.f) throw_error(ErrorCode::InvalidArgument, "tcd: eta (gamma) must be in [0, 1]");
    tcd(r, gamma, *schedule);
  } else {
    lcm(r);
  }
}

}  // namespace sdn
