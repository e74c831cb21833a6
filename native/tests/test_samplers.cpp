// Tests for native/samplers: seeded noise (torch CUDA Philox / CPU MT19937), the discrete schedule and step
// schedules, denoiser scalings, and every sampler against an independent double-precision re-implementation of
// its k-diffusion formula on an analytic denoiser.
#include <cmath>
#include <cstdio>

#include "samplers/sampling.h"
#include "sdn/error.h"
#include "test.h"

using sdn::ErrorCode;

namespace {

// Reference values printed by a small independent Python script written for these tests (pure-Python Philox4x32-10
// with float32 numpy Box-Muller; pure-Python MT19937 with torch's n >= 16 / n < 16 normal paths in float64).
// They agree with ENGINE-FACTS section 7's test vectors and the widely quoted torch outputs
// (torch.manual_seed(0); torch.randn(3) = 1.5410, -0.2934, -2.1788 ; CUDA seed 0: -0.9247, -0.4253, ...).
const double kCuda0[8] = {-0.9246625, -0.4253439, -2.6438457, 0.1451839, -0.1208666, -0.5797258, -0.6228516, -0.3283871};
const double kCuda42[8] = {0.1940189, 2.1613739, -0.1720506, 0.8490601, -1.9243992, 0.6529855, -0.6494410, -0.8175247};
const double kCuda42Second[4] = {0.1391375, -0.1082158, -0.7174220, 0.7566486};
const double kCudaBigSeed[4] = {0.4897101, 1.4151774, 0.8867580, -0.9277053};  // seed 0x123456789ABCDEF0
const double kCpu0n3[3] = {1.5409961, -0.2934289, -2.1787894};
const double kCpu0n3Next[3] = {0.5684313, -1.0845223, -1.3985954};
const double kCpu42n4[4] = {0.3366904, 0.1288094, 0.2344624, 0.2303330};
const double kCpu0n16[16] = {-1.1258398, -1.1523602, -0.2505786, -0.4338789, 0.8487103, 0.6920092,
                             -0.3160128, -2.1152195, 0.3222750, -1.2633348, 0.3499832, 0.3081339,
                             0.1198415,  1.2376579,  1.1167772,  -0.2472777};
const double kCpu7n21[21] = {-0.8201344, 0.3956310,  0.8989082,  -1.3884040, -0.1669960, 0.7820727,  1.0391076,
                             -0.7245111, -0.8489086, -1.2169295, -0.0810219, 1.3614851,  -1.3032167, 0.6741007,
                             -1.3233458, -1.3597688, -0.8667015, -0.5640065, -2.0564626, -0.3567225, 1.0955803};
const double kCpu7Next5[5] = {0.1736421, -1.2732713, 1.0841875, 0.1580562, -1.1137557};

std::vector<float> draw(sdn::NoiseGenerator& g, int n) {
  std::vector<float> v(n);
  g.randn(v.data(), n);
  return v;
}

}  // namespace

TEST(samplers, noise_cuda_philox) {
  auto g = sdn::make_noise_generator("cuda", 0);
  EXPECT_CLOSE(draw(*g, 8).data(), kCuda0, 8, 2e-6, 2e-6);
  auto h = sdn::make_noise_generator("philox", 42);
  EXPECT_CLOSE(draw(*h, 8).data(), kCuda42, 8, 2e-6, 2e-6);
  EXPECT_CLOSE(draw(*h, 4).data(), kCuda42Second, 4, 2e-6, 2e-6);  // offset 1
  auto b = sdn::make_noise_generator("cuda", 0x123456789ABCDEF0ull);
  EXPECT_CLOSE(draw(*b, 4).data(), kCudaBigSeed, 4, 2e-6, 2e-6);
  // element i does not depend on n
  auto c = sdn::make_noise_generator("cuda", 42);
  auto big = draw(*c, 20000);
  EXPECT_CLOSE(big.data(), kCuda42, 8, 2e-6, 2e-6);
  double sum = 0, sq = 0;
  for (float v : big) sum += v, sq += (double)v * v;
  EXPECT_NEAR(sum / big.size(), 0.0, 0.03);
  EXPECT_NEAR(sq / big.size(), 1.0, 0.05);
}

TEST(samplers, noise_cpu_mt19937) {
  auto g = sdn::make_noise_generator("cpu", 0);
  EXPECT_CLOSE(draw(*g, 3).data(), kCpu0n3, 3, 2e-6, 2e-6);
  EXPECT_CLOSE(draw(*g, 3).data(), kCpu0n3Next, 3, 2e-6, 2e-6);  // uses the cached sin value first
  auto h = sdn::make_noise_generator("cpu", 42);
  EXPECT_CLOSE(draw(*h, 4).data(), kCpu42n4, 4, 2e-6, 2e-6);
  auto s = sdn::make_noise_generator("cpu", 0);
  EXPECT_CLOSE(draw(*s, 16).data(), kCpu0n16, 16, 3e-6, 3e-6);
  auto t = sdn::make_noise_generator("cpu", 7);
  EXPECT_CLOSE(draw(*t, 21).data(), kCpu7n21, 21, 3e-6, 3e-6);  // tail window redrawn
  EXPECT_CLOSE(draw(*t, 5).data(), kCpu7Next5, 5, 2e-6, 2e-6);
}

TEST(samplers, noise_bad_input) {
  EXPECT_THROWS_CODE(sdn::make_noise_generator("gpu", 1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::make_noise_generator("", 1), ErrorCode::InvalidArgument);
  auto g = sdn::make_noise_generator("cpu", 1);
  float v;
  EXPECT_THROWS_CODE(g->randn(&v, -1), ErrorCode::InvalidArgument);
  g->randn(&v, 0);  // no-op
}

TEST(samplers, discrete_schedule) {
  sdn::DiscreteSchedule s;
  EXPECT_EQ(s.sigmas().size(), (size_t)1000);
  EXPECT_NEAR(s.alphas_cumprod()[0], 0.99915, 1e-6);
  EXPECT_NEAR(s.alphas_cumprod()[999], 0.0046600985, 1e-8);
  EXPECT_NEAR(s.sigma_min(), 0.0291675, 2e-6);
  EXPECT_NEAR(s.sigmas()[1], 0.0413145, 2e-6);
  EXPECT_NEAR(s.sigmas()[500], 1.6182789, 1e-5);
  EXPECT_NEAR(s.sigmas()[998], 14.526276, 1e-4);
  EXPECT_NEAR(s.sigma_max(), 14.6146421, 1e-4);
  for (size_t i = 1; i < 1000; i++) EXPECT_TRUE(s.sigmas()[i] > s.sigmas()[i - 1]);
  // integer and fractional timesteps round-trip
  for (float t : {0.f, 1.f, 0.25f, 17.5f, 499.f, 500.3f, 998.75f, 999.f}) EXPECT_NEAR(s.sigma_to_t(s.t_to_sigma(t)), t, 2e-3);
  for (int i : {0, 3, 250, 999}) EXPECT_NEAR(s.sigma_to_t(s.sigmas()[i]), i, 1e-3);
  // out of range sigmas clamp to the ends
  EXPECT_NEAR(s.sigma_to_t(1e-4f), 0.0, 1e-6);
  EXPECT_NEAR(s.sigma_to_t(100.f), 999.0, 1e-6);
  EXPECT_NEAR(s.sigma_to_t(0.f), 0.0, 1e-6);
  EXPECT_THROWS_CODE(s.sigma_to_t(NAN), ErrorCode::InvalidArgument);
  // a checkpoint's own alphas_cumprod
  std::vector<float> ac(s.alphas_cumprod());
  sdn::DiscreteSchedule c(ac);
  EXPECT_NEAR(c.sigma_max(), s.sigma_max(), 1e-6);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{0.5f}), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{0.9f, 0.95f}), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{0.9f, 0.f, 0.f}), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{0.9f, -0.1f}), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{1.0f, 0.5f}), ErrorCode::InvalidArgument);
  sdn::DiscreteSchedule zsnr(std::vector<float>{0.9f, 0.5f, 0.f});  // zero terminal SNR
  EXPECT_TRUE(std::isfinite(zsnr.sigma_max()) && zsnr.sigma_max() > 4000.f);
  EXPECT_THROWS_CODE(sdn::DiscreteSchedule(std::vector<float>{NAN, 0.5f}), ErrorCode::InvalidArgument);
}

TEST(samplers, step_schedules) {
  sdn::DiscreteSchedule s;
  // ENGINE-FACTS 6.5, N = 20 (computed there in Python; 4 decimals)
  const double disc[21] = {14.6146, 10.7468, 8.0815, 6.2049, 4.8557, 3.8654, 3.1238, 2.5572, 2.1157, 1.7648, 1.4806,
                           1.2458,  1.0481,  0.8784, 0.7297, 0.5964, 0.4736, 0.3555, 0.2322, 0.0292, 0};
  const double kar[21] = {14.6146, 11.7254, 9.3402, 7.3836, 5.7894, 4.4998, 3.4648, 2.6408, 1.9909, 1.4832, 1.0908,
                          0.7909,  0.5647,  0.3964, 0.2730, 0.1842, 0.1213, 0.0779, 0.0485, 0.0292, 0};
  const double expo[21] = {14.6146, 10.5363, 7.5961, 5.4763, 3.9481, 2.8464, 2.0521, 1.4794, 1.0666, 0.7689, 0.5544,
                           0.3997,  0.2881,  0.2077, 0.1498, 0.1080, 0.0778, 0.0561, 0.0405, 0.0292, 0};
  auto d = sdn::make_sigmas(s, "discrete", 20);
  EXPECT_EQ(d.size(), (size_t)21);
  EXPECT_CLOSE(d.data(), disc, 21, 6e-5, 0);
  auto k = sdn::make_sigmas(s, "karras", 20);
  EXPECT_CLOSE(k.data(), kar, 21, 6e-5, 0);
  auto e = sdn::make_sigmas(s, "exponential", 20);
  EXPECT_CLOSE(e.data(), expo, 21, 6e-5, 0);
  // endpoints equal the schedule's extremes
  for (auto* v : {&d, &k, &e}) {
    EXPECT_NEAR((*v)[0], s.sigma_max(), 2e-5);
    EXPECT_NEAR((*v)[19], s.sigma_min(), 2e-6);
    EXPECT_EQ((*v)[20], 0.f);
  }
  auto one = sdn::make_sigmas(s, "discrete", 1);
  EXPECT_EQ(one.size(), (size_t)2);
  EXPECT_NEAR(one[0], s.sigma_max(), 1e-5);
  EXPECT_EQ(sdn::make_sigmas(s, "karras", 1).size(), (size_t)2);
  EXPECT_NEAR(sdn::make_sigmas(s, "karras", 1)[0], s.sigma_max(), 1e-4);
  // LCM (sd.cpp): N = 4 -> t = 999, 759, 499, 259
  auto l = sdn::make_sigmas(s, "lcm", 4);
  const float lt[4] = {999, 759, 499, 259};
  for (int i = 0; i < 4; i++) EXPECT_NEAR(l[i], s.t_to_sigma(lt[i]), 1e-6);
  // simple: sigmas[999 - floor(i*1000/N)]
  auto sm = sdn::make_sigmas(s, "simple", 3);
  EXPECT_NEAR(sm[0], s.sigmas()[999], 1e-5);
  EXPECT_NEAR(sm[1], s.sigmas()[666], 1e-5);
  EXPECT_NEAR(sm[2], s.sigmas()[333], 1e-5);
  auto sg = sdn::make_sigmas(s, "sgm_uniform", 4);
  EXPECT_NEAR(sg[1], s.t_to_sigma(749.25f), 1e-5);
  for (const auto& name : sdn::scheduler_names()) {
    auto v = sdn::make_sigmas(s, name, 7);
    EXPECT_EQ(v.size(), (size_t)8);
    for (int i = 0; i + 1 < 7; i++) EXPECT_TRUE(v[i] > v[i + 1]);
  }
  // Align Your Steps: 10 steps = the published table; other counts interpolate log sigma over a uniform grid
  {
    const double sd1[11] = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                            0.9642583904,  0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582};
    const double xl[11] = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                           0.5550693289,  0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582};
    auto a = sdn::make_sigmas(s, "ays", 10, "sd1");
    EXPECT_EQ(a.size(), (size_t)11);
    EXPECT_CLOSE(a.data(), sd1, 10, 1e-6, 0);
    EXPECT_EQ(a[10], 0.f);
    auto b = sdn::make_sigmas(s, "ays", 10, "sdxl");
    EXPECT_CLOSE(b.data(), xl, 10, 1e-6, 0);
    EXPECT_CLOSE(sdn::make_sigmas(s, "ays", 10, "sd2").data(), sd1, 10, 1e-6, 0);
    for (int N : {1, 4, 7, 20}) {
      auto v = sdn::make_sigmas(s, "ays", N, "sdxl");
      EXPECT_EQ(v.size(), (size_t)N + 1);
      EXPECT_EQ(v[N], 0.f);
      for (int i = 0; i < N; i++) {
        double u = (double)i / N * 10, f = u - std::floor(u);
        int j = (int)std::floor(u);
        double want = std::exp((1 - f) * std::log(xl[j]) + f * std::log(xl[j + 1]));
        EXPECT_NEAR(v[i], want, want * 1e-5);
      }
    }
    EXPECT_THROWS_CODE(sdn::make_sigmas(s, "ays", 4, "flux"), ErrorCode::InvalidArgument);
  }
  EXPECT_THROWS_CODE(sdn::make_sigmas(s, "normal", 20), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::make_sigmas(s, "discrete", 0), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::make_sigmas(s, "discrete", -3), ErrorCode::InvalidArgument);
}

TEST(samplers, denoiser_scalings) {
  for (float sg : {0.0292f, 1.f, 14.6146f}) {
    auto e = sdn::denoiser_scalings(sdn::Prediction::Eps, sg);
    EXPECT_NEAR(e.c_skip, 1.0, 0);
    EXPECT_NEAR(e.c_out, -sg, 1e-7);
    EXPECT_NEAR(e.c_in, 1.0 / std::sqrt((double)sg * sg + 1), 1e-6);
    auto v = sdn::denoiser_scalings(sdn::Prediction::V, sg);
    EXPECT_NEAR(v.c_skip, 1.0 / ((double)sg * sg + 1), 1e-6);
    EXPECT_NEAR(v.c_out, -sg / std::sqrt((double)sg * sg + 1), 1e-6);
    EXPECT_NEAR(v.c_in, 1.0 / std::sqrt((double)sg * sg + 1), 1e-6);
  }
}

// ---- samplers against independent double-precision versions of the k-diffusion formulas ----
namespace {

// Analytic "model": pulls x towards a fixed data vector, more strongly at low sigma, with a sigma-dependent bias.
struct Analytic {
  std::vector<double> data;
  int calls = 0;
  template <typename T>
  void operator()(const std::vector<T>& x, double sigma, std::vector<T>& out) const {
    out.resize(x.size());
    double a = 0.3 / (1.0 + sigma * sigma), b = 1.0 / (1.0 + 0.5 * sigma);
    for (size_t k = 0; k < x.size(); k++) out[k] = (T)(a * x[k] + b * data[k] + 0.01 * sigma * std::sin((double)k));
  }
};

using Vec = std::vector<double>;

struct RefCtx {
  const Analytic& m;
  sdn::NoiseGenerator& g;
  Vec D(const Vec& x, double s) const {
    Vec o;
    m(x, s, o);
    return o;
  }
  Vec z(size_t n) const {
    std::vector<float> f(n);
    g.randn(f.data(), (int64_t)n);
    return Vec(f.begin(), f.end());
  }
};

void ref_ancestral(double from, double to, double eta, double* down, double* up) {
  *up = std::min(to, eta * std::sqrt(to * to * (from * from - to * to) / (from * from)));
  *down = std::sqrt(to * to - *up * *up);
}

Vec reference(const std::string& sampler, const RefCtx& c, Vec x, const std::vector<float>& sf,
              const sdn::DiscreteSchedule& sched) {
  const size_t n = x.size();
  std::vector<double> s(sf.begin(), sf.end());
  Vec old;
  std::vector<Vec> ds;  // every step's d (ipndm)
  for (size_t i = 0; i + 1 < s.size(); i++) {
    double si = s[i], sn = s[i + 1];
    Vec den = c.D(x, si);
    Vec d(n);
    for (size_t k = 0; k < n; k++) d[k] = (x[k] - den[k]) / si;
    ds.push_back(d);
    if (sampler == "euler" || sampler == "ddim_trailing" || sampler == "ddim") {
      for (size_t k = 0; k < n; k++) x[k] += d[k] * (sn - si);
    } else if (sampler == "euler_a") {
      double down, up;
      ref_ancestral(si, sn, 1.0, &down, &up);
      for (size_t k = 0; k < n; k++) x[k] += d[k] * (down - si);
      if (sn > 0) {
        Vec z = c.z(n);
        for (size_t k = 0; k < n; k++) x[k] += z[k] * up;
      }
    } else if (sampler == "heun") {
      double dt = sn - si;
      if (sn == 0) {
        for (size_t k = 0; k < n; k++) x[k] += d[k] * dt;
      } else {
        Vec x2(n);
        for (size_t k = 0; k < n; k++) x2[k] = x[k] + d[k] * dt;
        Vec den2 = c.D(x2, sn);
        for (size_t k = 0; k < n; k++) x[k] += (d[k] + (x2[k] - den2[k]) / sn) / 2 * dt;
      }
    } else if (sampler == "dpm2") {
      if (sn == 0) {
        for (size_t k = 0; k < n; k++) x[k] += d[k] * (sn - si);
      } else {
        double mid = std::exp((std::log(si) + std::log(sn)) / 2);
        Vec x2(n);
        for (size_t k = 0; k < n; k++) x2[k] = x[k] + d[k] * (mid - si);
        Vec den2 = c.D(x2, mid);
        for (size_t k = 0; k < n; k++) x[k] += (x2[k] - den2[k]) / mid * (sn - si);
      }
    } else if (sampler == "dpm++2m") {
      if (sn == 0) {
        x = den;
      } else {
        double h = std::log(si) - std::log(sn);
        Vec dd = den;
        if (i > 0) {
          double r = (std::log(s[i - 1]) - std::log(si)) / h;
          for (size_t k = 0; k < n; k++) dd[k] = (1 + 1 / (2 * r)) * den[k] - (1 / (2 * r)) * old[k];
        }
        for (size_t k = 0; k < n; k++) x[k] = (sn / si) * x[k] - std::expm1(-h) * dd[k];
      }
      old = den;
    } else if (sampler == "dpm++2s_a") {
      double down, up;
      ref_ancestral(si, sn, 1.0, &down, &up);
      if (down == 0) {
        x = den;
      } else {
        double t = -std::log(si), tn = -std::log(down), h = tn - t, ss = std::exp(-(t + h / 2));
        Vec x2(n);
        for (size_t k = 0; k < n; k++) x2[k] = (ss / si) * x[k] - std::expm1(-h / 2) * den[k];
        Vec den2 = c.D(x2, ss);
        for (size_t k = 0; k < n; k++) x[k] = (down / si) * x[k] - std::expm1(-h) * den2[k];
      }
      if (sn > 0) {
        Vec z = c.z(n);
        for (size_t k = 0; k < n; k++) x[k] += z[k] * up;
      }
    } else if (sampler == "ipndm") {
      // Adams-Bashforth coefficients of order 1..4 (newest first)
      static const double kC[4][4] = {{1, 0, 0, 0}, {1.5, -0.5, 0, 0}, {23.0 / 12, -16.0 / 12, 5.0 / 12, 0},
                                      {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24}};
      size_t order = std::min<size_t>(i + 1, 4);
      for (size_t k = 0; k < n; k++) {
        double acc = 0;
        for (size_t j = 0; j < order; j++) acc += kC[order - 1][j] * ds[i - j][k];
        x[k] += (sn - si) * acc;
      }
    } else if (sampler == "tcd") {
      // DDPM-space formulation (TCD paper, Algorithm 4, as diffusers/sd.cpp write it), gamma 0.3, converted to
      // and from k-diffusion space with abar = 1/(1 + sigma^2)
      const double gamma = 0.3;
      double ab_t = 1 / (1 + si * si);
      Vec eps(n), x0(n);
      for (size_t k = 0; k < n; k++) {
        double xd = x[k] * std::sqrt(ab_t);  // x_ddpm
        eps[k] = (x[k] - den[k]) / si;
        x0[k] = (xd - std::sqrt(1 - ab_t) * eps[k]) / std::sqrt(ab_t);
      }
      if (sn == 0) {
        x = x0;
      } else {
        double t_prev = sched.sigma_to_t((float)sn);
        double t_s = std::floor((1 - gamma) * t_prev);
        double sig_s = sched.t_to_sigma((float)t_s);
        double ab_s = 1 / (1 + sig_s * sig_s), ab_p = 1 / (1 + sn * sn);
        Vec xs(n);
        for (size_t k = 0; k < n; k++) xs[k] = std::sqrt(ab_s) * x0[k] + std::sqrt(1 - ab_s) * eps[k];
        Vec z = c.z(n);
        for (size_t k = 0; k < n; k++) {
          double xp = std::sqrt(ab_p / ab_s) * xs[k] + std::sqrt(std::max(0.0, 1 - ab_p / ab_s)) * z[k];
          x[k] = xp / std::sqrt(ab_p);
        }
      }
    } else if (sampler == "lcm") {
      x = den;
      if (sn > 0) {
        Vec z = c.z(n);
        for (size_t k = 0; k < n; k++) x[k] += z[k] * sn;
      }
    }
  }
  return x;
}

}  // namespace

TEST(samplers, all_samplers_match_reference) {
  sdn::DiscreteSchedule sched;
  const size_t n = 37;  // odd, not a multiple of 16 (exercises the CPU generator's tail path)
  Analytic m;
  auto dv = sdntest::random_vector(n, 11, -1.f, 1.f);
  m.data.assign(dv.begin(), dv.end());
  for (const std::string rng : {"cuda", "cpu"}) {
    for (const std::string sched_name : {"discrete", "karras", "lcm"}) {
      for (int steps : {1, 2, 6}) {
        auto sigmas = sdn::make_sigmas(sched, sched_name, steps);
        for (const auto& sampler : sdn::sampler_names()) {
          // ours: initial noise from the generator, then the sampler continues the same stream
          auto g = sdn::make_noise_generator(rng, 1234);
          std::vector<float> x(n);
          g->randn(x.data(), (int64_t)n);
          for (auto& v : x) v *= sigmas[0];
          int calls = 0, last_step = -1;
          sdn::Denoiser model = [&](const std::vector<float>& xin, float sg, std::vector<float>& out) {
            calls++;
            m(xin, sg, out);
          };
          sdn::run_sampler(
              sampler, model, x, sigmas, *g,
              [&](int i, int total) {
                EXPECT_EQ(total, steps);
                EXPECT_EQ(i, last_step + 1);
                last_step = i;
                return true;
              },
              -1.f, &sched);
          EXPECT_EQ(last_step, steps - 1);
          // reference
          auto rg = sdn::make_noise_generator(rng, 1234);
          RefCtx c{m, *rg};
          Vec x0 = c.z(n);
          for (auto& v : x0) v *= sigmas[0];
          Vec want = reference(sampler, c, x0, sigmas, sched);
          std::string why;
          if (!sdntest::all_close(x.data(), want.data(), n, 2e-4, 2e-4, &why))
            SDN_FAIL(sampler << " " << sched_name << " " << steps << " steps, rng " << rng << ": " << why);
          // both streams are at the same position afterwards (same number of draws)
          float a, b;
          g->randn(&a, 1);
          rg->randn(&b, 1);
          if (a != b) SDN_FAIL(sampler << ": different number of noise draws than the reference");
          // model evaluations: 2 per step for heun/dpm2/dpm++2s_a except the last, else 1
          bool two = sampler == "heun" || sampler == "dpm2" || sampler == "dpm++2s_a";
          EXPECT_EQ(calls, two ? 2 * steps - 1 : steps);
        }
      }
    }
  }
}

TEST(samplers, ancestral_eta) {
  // eta 0 turns euler_a into euler (no draws); ddim_trailing with eta 1 equals euler_a
  sdn::DiscreteSchedule sched;
  auto sigmas = sdn::make_sigmas(sched, "discrete", 4);
  Analytic m;
  auto dv = sdntest::random_vector(19, 3);
  m.data.assign(dv.begin(), dv.end());
  sdn::Denoiser model = [&](const std::vector<float>& x, float sg, std::vector<float>& out) { m(x, sg, out); };
  auto run = [&](const std::string& name, float eta) {
    auto g = sdn::make_noise_generator("cuda", 5);
    std::vector<float> x = sdntest::random_vector(19, 4);
    for (auto& v : x) v *= sigmas[0];
    sdn::run_sampler(name, model, x, sigmas, *g, nullptr, eta);
    return x;
  };
  auto e0 = run("euler_a", 0.f), eu = run("euler", -1.f);
  EXPECT_CLOSE(e0.data(), eu.data(), 19, 1e-5, 1e-5);
  auto d1 = run("ddim_trailing", 1.f), ea = run("euler_a", -1.f);
  EXPECT_CLOSE(d1.data(), ea.data(), 19, 1e-6, 1e-6);
  auto dd = run("ddim_trailing", -1.f);
  EXPECT_CLOSE(dd.data(), eu.data(), 19, 1e-5, 1e-5);
}

TEST(samplers, abort_and_bad_input) {
  sdn::DiscreteSchedule sched;
  auto sigmas = sdn::make_sigmas(sched, "discrete", 5);
  Analytic m;
  m.data.assign(9, 0.5);
  int calls = 0;
  sdn::Denoiser model = [&](const std::vector<float>& x, float sg, std::vector<float>& out) {
    calls++;
    m(x, sg, out);
  };
  auto g = sdn::make_noise_generator("cuda", 1);
  for (const auto& name : sdn::sampler_names()) {
    std::vector<float> x(9, 1.f);
    calls = 0;
    EXPECT_THROWS_CODE(sdn::run_sampler(name, model, x, sigmas, *g, [](int i, int) { return i < 1; }, -1.f, &sched),
                       ErrorCode::Aborted);
    EXPECT_TRUE(calls >= 2 && calls <= 4);  // stopped after the second step (i = 1)
  }
  std::vector<float> x(9, 1.f);
  auto ok = [](int, int) { return true; };
  EXPECT_THROWS_CODE(sdn::run_sampler("euler_ancestral", model, x, sigmas, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", model, x, {1.f}, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", model, x, {1.f, 0.f, 0.f}, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", model, x, {1.f, NAN}, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", model, x, {1.f, -0.5f}, *g, ok), ErrorCode::InvalidArgument);
  std::vector<float> empty;
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", model, empty, sigmas, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("euler", sdn::Denoiser(), x, sigmas, *g, ok), ErrorCode::InvalidArgument);
  // tcd needs the schedule (sigma <-> t) and a gamma in [0, 1]
  EXPECT_THROWS_CODE(sdn::run_sampler("tcd", model, x, sigmas, *g, ok), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(sdn::run_sampler("tcd", model, x, sigmas, *g, ok, 1.5f, &sched), ErrorCode::InvalidArgument);
}
