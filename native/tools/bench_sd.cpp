// sdn_bench_sd: times one txt2img run on a checkpoint, stage by stage, through the public API.
//   sdn_bench_sd --model FILE [--size 256] [--type f16|q8_0|q4_0|...] [--steps 2] [--threads N]
//                [--tokenizer MERGES] [--sampler euler] [--cfg 7] [--device auto|cpu|vulkan|vulkan:N]
//                [--vram-budget MIB]
// Prints one JSON line: load, text encoding, each U-Net step (CFG on unless --cfg 1), VAE decode (seconds),
// peak device memory (activations + weights), the weight-streaming figures under --vram-budget (peak device
// weights, streaming area, weights kept in host memory, bytes streamed in the last step and in all),
// and the peak resident set (VmHWM) of this process. Run one configuration per process so the peak is its own
// (scripts/bench/sd.js does that).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "sdn/sdn.h"

using Clock = std::chrono::steady_clock;

// Contention baseline: FP32 FMA throughput of `threads` threads right now (12 independent accumulator chains
// per thread; AVX-512 where the CPU has it, else a plain loop the compiler may vectorise). On a quiet machine of
// this kind it is ~108 GFLOP/s for 2 threads; the ratio tells how much of the machine this run really had.
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static double fma_avx512(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(0.0001f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  double r = 0;
  for (float v : lanes) r += v;  // the value keeps the loop alive
  return r;
}
#endif
static double fma_plain(int64_t iters) {
  float acc[12][16];
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 16; ++l) acc[i][l] = 0.001f * i;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i)
      for (int l = 0; l < 16; ++l) acc[i][l] = acc[i][l] * 0.9999f + 0.0001f;
  double s = 0;
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 16; ++l) s += acc[i][l];
  return s;
}
static double fma_gflops(int threads) {
  const int64_t iters = 4000000;  // 4e6 * 12 * 16 * 2 = 1.5 GFLOP per thread
  bool avx512 = false;
#if defined(__x86_64__)
  avx512 = __builtin_cpu_supports("avx512f");
#endif
  std::vector<std::thread> ts;
  std::vector<double> sink(threads);
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
#if defined(__x86_64__)
      sink[t] = avx512 ? fma_avx512(iters) : fma_plain(iters);
#else
      sink[t] = fma_plain(iters);
#endif
    });
  for (auto& t : ts) t.join();
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  volatile double keep = sink[0];
  (void)keep;
  return (double)iters * 12 * 16 * 2 * threads / s / 1e9;
}

static double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmHWM:") == 0) return std::atof(line.c_str() + 6) / 1024.0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
#ifdef __APPLE__
  return ru.ru_maxrss / (1024.0 * 1024.0);
#else
  return ru.ru_maxrss / 1024.0;
#endif
}
// CPU seconds (user, system) and page faults (minor, major) of the process so far: per-phase differences show
// what a phase cost in CPU time, which other processes sharing the cores disturb far less than wall time.
struct Usage {
  double user = 0, sys = 0;
  long minflt = 0, majflt = 0;
};
static Usage usage_now() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  Usage u;
  u.user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6;
  u.sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
  u.minflt = ru.ru_minflt;
  u.majflt = ru.ru_majflt;
  return u;
}
static double current_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmRSS:") == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

int main(int argc, char** argv) {
  std::string model, type, tokenizer, sampler = "euler", device = "cpu";
  int size = 256, steps = 2, threads = 0;
  float cfg = 7.f;
  double vram_budget_mb = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") model = val();
    else if (a == "--size") size = std::atoi(val().c_str());
    else if (a == "--type") type = val();
    else if (a == "--steps") steps = std::atoi(val().c_str());
    else if (a == "--threads") threads = std::atoi(val().c_str());
    else if (a == "--tokenizer") tokenizer = val();
    else if (a == "--sampler") sampler = val();
    else if (a == "--cfg") cfg = std::strtof(val().c_str(), nullptr);
    else if (a == "--device") device = val();
    else if (a == "--vram-budget") vram_budget_mb = std::strtod(val().c_str(), nullptr);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: sdn_bench_sd --model FILE [--size N] [--type T] [--steps N] [--threads N] [--tokenizer F]\n"
                         "       [--device auto|cpu|vulkan|vulkan:N] [--vram-budget MIB]\n");
    return 2;
  }
  try {
    sdn::LoadOptions lo;
    lo.threads = threads;
    lo.weight_type = type == "f16" ? "" : type;  // the reference checkpoint is stored as f16
    lo.tokenizer_path = tokenizer;
    lo.device = device;
    lo.vram_budget = (uint64_t)(vram_budget_mb * 1048576.0);
    const int base_threads = threads > 0 ? threads : sdn::system_info().threads;
    double gflops_before = fma_gflops(base_threads);
    auto t0 = Clock::now();
    auto m = sdn::Model::load(model, lo);
    double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
    double rss_after_load = current_rss_mb();

    sdn::GenerateParams p;
    p.prompt = "a red fox in the snow, highly detailed";
    p.width = p.height = size;
    p.steps = steps;
    p.cfg_scale = cfg;
    p.sampler = sampler;
    p.seed = 42;
    std::vector<double> step_s;
    double encode_s = 0, decode_s = 0, rss_encoded = 0, rss_sampling = 0, rss_sampled = 0;
    uint64_t dev_peak_total = 0;  // activations + weights on the device, sampled at each progress report
    uint64_t streamed_mark = 0;   // bytes streamed (vramBudget) at the previous progress report
    std::vector<double> step_streamed;  // bytes streamed during each sampling step
    Clock::time_point mark = Clock::now();
    Usage umark = usage_now();
    std::vector<Usage> step_use;  // per step: CPU seconds and page faults of the step
    Usage encode_use, decode_use;
    auto diff = [](const Usage& a, const Usage& b) {
      Usage d;
      d.user = a.user - b.user;
      d.sys = a.sys - b.sys;
      d.minflt = a.minflt - b.minflt;
      d.majflt = a.majflt - b.majflt;
      return d;
    };
    sdn::GenerateCallbacks cb;
    cb.on_progress = [&](const sdn::Progress& pr) {
      auto now = Clock::now();
      sdn::Model::MemoryUse mu = m->memory_use();
      dev_peak_total = std::max<uint64_t>(dev_peak_total, mu.activations + mu.weights);
      double dt = std::chrono::duration<double>(now - mark).count();
      Usage u = usage_now(), du = diff(u, umark);
      umark = u;
      if (pr.phase == sdn::Phase::Encode && pr.step == 1) encode_use = du;
      if (pr.phase == sdn::Phase::Sample && pr.step > 0) step_use.push_back(du);
      if (pr.phase == sdn::Phase::Decode && pr.step == 1) decode_use = du;
      if (pr.phase == sdn::Phase::Encode && pr.step == 1) {
        encode_s = dt;
        rss_encoded = current_rss_mb();
      }
      if (pr.phase == sdn::Phase::Sample && pr.step > 0) {
        step_s.push_back(dt);
        step_streamed.push_back((double)(mu.streamed - streamed_mark));
        rss_sampling = std::max(rss_sampling, current_rss_mb());
      }
      if (pr.phase == sdn::Phase::Decode && pr.step == 0) rss_sampled = current_rss_mb();
      if (pr.phase == sdn::Phase::Decode && pr.step == 1) decode_s = dt;
      mark = now;
      streamed_mark = mu.streamed;
    };
    auto g0 = Clock::now();
    auto images = m->generate(p, cb);
    double total_s = std::chrono::duration<double>(Clock::now() - g0).count();
    double gflops_after = fma_gflops(base_threads);
    double best = 1e30, sum = 0;
    for (double s : step_s) {
      best = std::min(best, s);
      sum += s;
    }
    sdn::SystemInfo si = sdn::system_info();
    sdn::Model::MemoryUse mu = m->memory_use();
    std::printf("{\"device\":\"%s\",\"peak_device_activations_mb\":%.1f,\"peak_device_mb\":%.1f,",
                m->device().c_str(), mu.peak_activations / 1048576.0,
                std::max<double>(dev_peak_total, (double)(mu.peak_activations + mu.peak_weights)) / 1048576.0);
    const double streamed_step = step_streamed.empty() ? 0 : step_streamed.back();  // the last step: steady state
    std::printf("\"vram_budget_mb\":%.1f,\"peak_device_weights_mb\":%.1f,\"stream_area_mb\":%.1f,"
                "\"host_weights_mb\":%.1f,\"streamed_mb_per_step\":%.1f,\"streamed_mb\":%.1f,",
                vram_budget_mb, std::max(mu.peak_weights, mu.weights) / 1048576.0, mu.stream_area / 1048576.0,
                mu.host_weights / 1048576.0, streamed_step / 1048576.0, mu.streamed / 1048576.0);
    std::printf("\"size\":%d,\"type\":\"%s\",\"steps\":%d,\"cfg\":%.2f,\"threads\":%d,\"simd\":\"%s\","
                "\"load_s\":%.3f,\"encode_s\":%.3f,\"step_s\":[",
                size, type.empty() ? "f16" : type.c_str(), steps, cfg, si.threads, si.simd.c_str(), load_s, encode_s);
    for (size_t i = 0; i < step_s.size(); ++i) std::printf("%s%.3f", i ? "," : "", step_s[i]);
    auto use_json = [](const Usage& u) {
      std::printf("{\"user_s\":%.3f,\"sys_s\":%.3f,\"minflt\":%ld,\"majflt\":%ld}", u.user, u.sys, u.minflt, u.majflt);
    };
    std::printf("],\"encode_use\":");
    use_json(encode_use);
    std::printf(",\"step_use\":[");
    for (size_t i = 0; i < step_use.size(); ++i) {
      if (i) std::printf(",");
      use_json(step_use[i]);
    }
    std::printf("],\"decode_use\":");
    use_json(decode_use);
    std::printf(",\"step_best_s\":%.3f,\"step_mean_s\":%.3f,\"decode_s\":%.3f,\"total_s\":%.3f,"
                "\"rss_after_load_mb\":%.1f,\"rss_after_encode_mb\":%.1f,\"rss_sampling_mb\":%.1f,\"rss_before_decode_mb\":%.1f,\"peak_rss_mb\":%.1f,\"fma_gflops_before\":%.1f,\"fma_gflops_after\":%.1f}\n",
                best, step_s.empty() ? 0 : sum / step_s.size(), decode_s, total_s, rss_after_load, rss_encoded, rss_sampling, rss_sampled, peak_rss_mb(),
                gflops_before, gflops_after);
  } catch (const sdn::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", sdn::error_code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
