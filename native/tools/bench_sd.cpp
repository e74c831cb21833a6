// sdn_bench_sd: times one txt2img run on a checkpoint, stage by stage, through the public API.
//   sdn_bench_sd --model FILE [--size 256] [--type f16|q8_0|q4_0|...] [--steps 2] [--threads N]
//                [--tokenizer MERGES] [--sampler euler] [--cfg 7]
// Prints one JSON line: load, text encoding, each U-Net step (CFG on unless --cfg 1), VAE decode (seconds),
// and the peak resident set (VmHWM) of this process. Run one configuration per process so the peak is its own
// (scripts/bench/sd.js does that).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "sdn/sdn.h"

using Clock = std::chrono::steady_clock;

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
static double current_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.compare(0, 6, "VmRSS:") == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

int main(int argc, char** argv) {
  std::string model, type, tokenizer, sampler = "euler";
  int size = 256, steps = 2, threads = 0;
  float cfg = 7.f;
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
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: sdn_bench_sd --model FILE [--size N] [--type T] [--steps N] [--threads N] [--tokenizer F]\n");
    return 2;
  }
  try {
    sdn::LoadOptions lo;
    lo.threads = threads;
    lo.weight_type = type == "f16" ? "" : type;  // the reference checkpoint is stored as f16
    lo.tokenizer_path = tokenizer;
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
    double encode_s = 0, decode_s = 0;
    Clock::time_point mark = Clock::now();
    sdn::GenerateCallbacks cb;
    cb.on_progress = [&](const sdn::Progress& pr) {
      auto now = Clock::now();
      double dt = std::chrono::duration<double>(now - mark).count();
      if (pr.phase == sdn::Phase::Encode && pr.step == 1) encode_s = dt;
      if (pr.phase == sdn::Phase::Sample && pr.step > 0) step_s.push_back(dt);
      if (pr.phase == sdn::Phase::Decode && pr.step == 1) decode_s = dt;
      mark = now;
    };
    auto g0 = Clock::now();
    auto images = m->generate(p, cb);
    double total_s = std::chrono::duration<double>(Clock::now() - g0).count();
    double best = 1e30, sum = 0;
    for (double s : step_s) {
      best = std::min(best, s);
      sum += s;
    }
    sdn::SystemInfo si = sdn::system_info();
    std::printf("{\"size\":%d,\"type\":\"%s\",\"steps\":%d,\"cfg\":%.2f,\"threads\":%d,\"simd\":\"%s\","
                "\"load_s\":%.3f,\"encode_s\":%.3f,\"step_s\":[",
                size, type.empty() ? "f16" : type.c_str(), steps, cfg, si.threads, si.simd.c_str(), load_s, encode_s);
    for (size_t i = 0; i < step_s.size(); ++i) std::printf("%s%.3f", i ? "," : "", step_s[i]);
    std::printf("],\"step_best_s\":%.3f,\"step_mean_s\":%.3f,\"decode_s\":%.3f,\"total_s\":%.3f,"
                "\"rss_after_load_mb\":%.1f,\"peak_rss_mb\":%.1f}\n",
                best, step_s.empty() ? 0 : sum / step_s.size(), decode_s, total_s, rss_after_load, peak_rss_mb());
  } catch (const sdn::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", sdn::error_code_name(e.code()), e.what());
    return 1;
  }
  return 0;
}
