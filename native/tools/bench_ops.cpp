// Benchmarks of the CPU backend's non-GEMM operations at Stable Diffusion 1.x shapes.
//   sdn_bench_ops [--reps N] [--filter SUBSTR] [--simd scalar|avx2|avx512] [--threads N] [--no-peak]
// Prints the best of N runs per case: attention in GFLOP/s (4 * B * H * Tq * Tk * D / time, causal counted as
// full), streaming ops in GB/s (bytes read + written once). The machine may be shared, so attention lines also
// give two baselines measured around the case: the FMA peak of all pool threads (wall clock), and GFLOP per
// CPU-second against one thread's FMA peak per CPU-second (a per-core efficiency that other processes' time
// slices do not distort; exact with --threads 1 only, since other threads' CPU time is sampled at scheduler
// ticks). For A/B work: `perf stat -e cycles:u sdn_bench_ops --no-peak --threads 1 --filter CASE`.
#include <algorithm>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/simd/ops_kernels.h"
#include "core/cpu.h"
#include "core/tensor.h"
#include "core/threadpool.h"

using namespace sdn;

namespace {

Tensor rnd(const std::vector<int64_t>& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::empty(shape);
  uint32_t s = seed * 2654435761u + 1u;
  float* p = t.f32();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * (float)(s >> 8) * (1.0f / 16777216.0f);
  }
  return t;
}

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Best wall-clock time of `reps` runs; *cpu_best gets the least process CPU time of a run (all threads), which
// time slices given to other processes do not inflate.
double best_seconds(int reps, const std::function<void()>& fn, double* cpu_best = nullptr) {
  fn();  // warm-up
  double best = 1e30, cbest = 1e30;
  for (int r = 0; r < reps; ++r) {
    double c0 = cpu_now();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    double c1 = cpu_now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    cbest = std::min(cbest, c1 - c0);
  }
  if (cpu_best) *cpu_best = cbest;
  return best;
}

// FMA peak of one thread per CPU second (GFLOP per CPU-second), the per-core baseline for the CPU-time figures.
double fma_peak_cpu() {
  const int64_t iters = 2000000;
  double best = 0;
  int lanes = 1;
  for (int rep = 0; rep < 3; ++rep) {
    double c0 = cpu_now();
    volatile float sink = SDN_DISPATCH(fma_probe)(iters, &lanes);
    (void)sink;
    best = std::max(best, (double)iters * 12 * 2 * lanes / (cpu_now() - c0) * 1e-9);
  }
  return best;
}

// FMA peak of the current SIMD level on all pool threads (GFLOP/s), measured now: the baseline every attention
// figure is compared with, since the machine is shared and its speed drifts between runs.
double fma_peak() {
  const int64_t iters = 2000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<int> lanes(64, 1);
    std::vector<float> sink(64);
    auto t0 = std::chrono::steady_clock::now();
    default_pool().run([&](int tid, int) { sink[tid] = SDN_DISPATCH(fma_probe)(iters, &lanes[tid]); });
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, (double)default_threads() * iters * 12 * 2 * lanes[0] / t * 1e-9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::string filter;
  bool peak_baseline = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--filter" && i + 1 < argc) filter = argv[++i];
    else if (a == "--no-peak") peak_baseline = false;  // (for perf stat: count only the kernels' cycles)
    else if (a == "--threads" && i + 1 < argc) set_default_threads(std::atoi(argv[++i]));
    else if (a == "--simd" && i + 1 < argc) {
      std::string l = argv[++i];
      SimdLevel lv = l == "scalar" ? SimdLevel::Scalar : l == "avx2" ? SimdLevel::AVX2 : SimdLevel::AVX512;
      if (!simd_set_level(lv)) std::fprintf(stderr, "SIMD level %s not supported here\n", l.c_str());
    } else {
      std::fprintf(stderr, "usage: sdn_bench_ops [--reps N] [--filter SUBSTR] [--simd LEVEL] [--threads N] [--no-peak]\n");
      return 2;
    }
  }
  Backend& be = cpu_backend();
  std::printf("cpu ops bench: simd %s, %d threads, best of %d\n", simd_name(simd_level()), default_threads(), reps);

  struct Attn {
    const char* name;
    int64_t b, tq, tk;
    int h, d;
    bool causal;
  };
  std::vector<Attn> attn = {
      {"attn self 4096 h8 d40 (512^2, C=320)", 1, 4096, 4096, 8, 40, false},
      {"attn self 1024 h8 d40 (256^2, C=320)", 1, 1024, 1024, 8, 40, false},
      {"attn self 1024 h8 d80 (512^2, C=640)", 1, 1024, 1024, 8, 80, false},
      {"attn self 256 h8 d160 (512^2, C=1280)", 1, 256, 256, 8, 160, false},
      {"attn cross 4096x77 h8 d40", 1, 4096, 77, 8, 40, false},
      {"attn cross 1024x154 h8 d80", 1, 1024, 154, 8, 80, false},
      {"attn vae 1024 h1 d512 (256^2)", 1, 1024, 1024, 1, 512, false},
      {"attn vae 4096 h1 d512 (512^2)", 1, 4096, 4096, 1, 512, false},
      {"attn clip 77 h12 d64 causal", 1, 77, 77, 12, 64, true},
  };
  for (auto& c : attn) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    Tensor q = rnd({c.b, c.tq, c.h * c.d}, 1, -2.f, 2.f);
    Tensor k = rnd({c.b, c.tk, c.h * c.d}, 2, -2.f, 2.f);
    Tensor v = rnd({c.b, c.tk, c.h * c.d}, 3);
    double peak = peak_baseline ? fma_peak() : 0;
    double cpu = 0;
    double t = best_seconds(reps, [&] { be.attention(q, k, v, c.h, c.causal); }, &cpu);
    double flop = 4.0 * c.b * c.h * (double)c.tq * c.tk * c.d;
    double peak2 = peak_baseline ? fma_peak() : 0;
    double pc = peak_baseline ? fma_peak_cpu() : 0;
    std::printf("%-40s %9.3f ms %7.1f GFLOP/s (%3.0f%% of FMA peak %.0f) | per CPU-s %6.1f GFLOP (%3.0f%% of %.0f)\n",
                c.name, t * 1e3, flop / t * 1e-9, 100.0 * flop / t * 1e-9 / std::max(peak, peak2),
                std::max(peak, peak2), flop / cpu * 1e-9, 100.0 * flop / cpu * 1e-9 / pc, pc);
  }

  struct Stream {
    const char* name;
    double bytes;
    std::function<void()> fn;
  };
  Tensor x = rnd({1, 320, 64, 64}, 4);
  Tensor g = rnd({320}, 5), bb = rnd({320}, 6), ch = rnd({1, 320, 1, 1}, 7);
  Tensor tok = rnd({1, 4096, 320}, 8), tokv = rnd({320}, 9);
  Tensor ff = rnd({1, 4096, 2560}, 10);
  double xb = (double)x.numel() * 4;
  std::vector<Stream> streams = {
      {"group_norm 320x64x64 g32 affine", 2 * xb, [&] { be.group_norm(x, 32, 1e-5f, &g, &bb, false); }},
      {"group_norm+silu 320x64x64 g32", 2 * xb, [&] { be.group_norm(x, 32, 1e-5f, &g, &bb, true); }},
      {"silu 320x64x64", 2 * xb, [&] { be.unary(UnaryOp::Silu, x); }},
      {"gelu_erf 320x64x64", 2 * xb, [&] { be.unary(UnaryOp::GeluErf, x); }},
      {"geglu 4096x(2x1280)", (double)ff.numel() * 4 * 1.5, [&] { be.geglu(ff); }},
      {"layer_norm 4096x320", 2 * xb, [&] { be.layer_norm(tok, 1e-5f, &g, &bb); }},
      {"softmax 4096x320", 2 * xb, [&] { be.softmax(tok); }},
      {"add same-shape 320x64x64", 3 * xb, [&] { be.add(x, x); }},
      {"add per-channel [1,320,1,1]", 2 * xb, [&] { be.add(x, ch); }},
      {"mul [320] over [1,4096,320]", 2 * xb, [&] { be.mul(tok, tokv); }},
      {"nchw_to_nlc 320x64x64", 2 * xb, [&] { be.nchw_to_nlc(x); }},
      {"nlc_to_nchw 4096x320", 2 * xb, [&] { be.nlc_to_nchw(tok, 64, 64); }},
      {"upsample2x 320x64x64", 5 * xb, [&] { be.upsample_nearest2x(x); }},
      {"concat ch 320+320 x64x64", 4 * xb, [&] { be.concat(x, x, 1); }},
  };
  for (auto& s : streams) {
    if (!filter.empty() && std::string(s.name).find(filter) == std::string::npos) continue;
    double t = best_seconds(reps * 4, s.fn);
    std::printf("%-40s %9.3f ms %8.2f GB/s\n", s.name, t * 1e3, s.bytes / t * 1e-9);
  }
  return 0;
}
