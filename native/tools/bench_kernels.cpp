// sdn_bench_kernels: measures the CPU's FP32 FMA peak, then linear (GEMM) and conv2d 3x3 throughput against it.
//   sdn_bench_kernels [--quick] [--threads N] [--reps N]
// Times are the best of several repetitions (the machine may be shared); rates are GFLOP/s and % of the peak
// measured in the same run. Conv rates are "effective": direct-convolution FLOPs (2*B*OC*OH*OW*C*9) / time.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>
#include <ctime>

#include "backends/cpu/gemm.h"
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "sdn/error.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <mutex>
#include <set>
#include <thread>
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their internal _mm512_undefined_* temporaries.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

using namespace sdn;
using Clock = std::chrono::steady_clock;

namespace {

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }
// CPU time of the whole process (all threads): excludes time spent descheduled on a shared machine.
double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Timing {
  double wall = 1e30;    // best wall time of one run
  double cpu = 1e30;     // CPU seconds (all threads) of the run with the least CPU time
  double cycles = 1e30;  // user-mode core cycles (all pool threads) of the run with the fewest; 1e30 if unavailable
};

// User-mode cycle counters on every pool thread (Linux perf events). Cycles only advance while a thread runs, so
// FLOPs per cycle compared with the FMA loop's FLOPs per cycle is a peak ratio that other processes sharing the
// cores do not disturb (busy-wait cycles inside the pool are counted: that is honest overhead).
struct CycleCounters {
  std::vector<int> fds;
  bool ok() const { return !fds.empty(); }
  double read_total() const {
    double total = 0;
#if defined(__linux__)
    for (int fd : fds) {
      uint64_t v = 0;
      if (::read(fd, &v, sizeof v) != (ssize_t)sizeof v) return -1;
      total += (double)v;
    }
#endif
    return total;
  }
};

CycleCounters open_cycle_counters(ThreadPool& pool) {
  CycleCounters cc;
#if defined(__linux__)
  // Learn the pool's thread ids (each index sleeps briefly so that every worker picks one up).
  std::set<long> tids;
  std::mutex m;
  for (int attempt = 0; attempt < 20 && (int)tids.size() < pool.size(); ++attempt)
    pool.run([&](int, int) {
      {
        std::lock_guard<std::mutex> lk(m);
        tids.insert((long)syscall(SYS_gettid));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
  if ((int)tids.size() < pool.size()) return cc;
  for (long tid : tids) {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_HARDWARE;
    attr.config = PERF_COUNT_HW_CPU_CYCLES;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &attr, (pid_t)tid, -1, -1, 0);
    if (fd < 0) {
      for (int f : cc.fds) close(f);
      cc.fds.clear();
      return cc;
    }
    cc.fds.push_back(fd);
  }
#endif
  return cc;
}

CycleCounters* g_cycles = nullptr;

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown CPU";
}

// Register-only FMA loops: 12 independent accumulators, `iters` iterations. Returns FLOPs done.
#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) double fma_loop_avx512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return (double)iters * 12 * 16 * 2;
}
__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  float out[8];
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  _mm256_storeu_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return (double)iters * 12 * 8 * 2;
}
#endif
double fma_loop_scalar(int64_t iters) {
  float a[12];
  for (int i = 0; i < 12; ++i) a[i] = 1.0f + i * 1e-3f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = a[i] * 0.999999f + 1e-7f;
  volatile float sink = a[0] + a[11];
  (void)sink;
  return (double)iters * 12 * 2;
}

double fma_loop(int64_t iters) {
#if defined(__x86_64__)
  if (simd_level() == SimdLevel::AVX512) return fma_loop_avx512(iters);
  if (simd_level() == SimdLevel::AVX2) return fma_loop_avx2(iters);
#endif
  return fma_loop_scalar(iters);
}

// Peak FLOP/s by wall time and by CPU time (FLOPs per CPU-second times the thread count).
struct Peak {
  double wall_gf = 0, cpu_gf = 0, flops_per_cycle = 0;
};
Peak measure_peak(ThreadPool& pool, int reps) {
  Peak p;
  const int64_t iters = 20'000'000;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> flops((size_t)pool.size(), 0.0);
    double y0 = g_cycles ? g_cycles->read_total() : 0;
    double t0 = now_s(), c0 = cpu_s();
    pool.run([&](int i, int) { flops[(size_t)i] = fma_loop(iters); });
    double dt = now_s() - t0, dc = cpu_s() - c0;
    double dy = g_cycles ? g_cycles->read_total() - y0 : 0;
    double total = 0;
    for (double f : flops) total += f;
    p.wall_gf = std::max(p.wall_gf, total / dt / 1e9);
    p.cpu_gf = std::max(p.cpu_gf, total / dc * pool.size() / 1e9);
    if (dy > 0) p.flops_per_cycle = std::max(p.flops_per_cycle, total / dy);
  }
  return p;
}

// Best times of `reps` runs of fn (after one warm-up run), running at least min_total seconds.
template <typename F>
Timing best_time(F&& fn, int reps, double min_total = 0.0) {
  fn();
  Timing t;
  double total = 0;
  for (int r = 0; r < reps || total < min_total; ++r) {
    double y0 = g_cycles ? g_cycles->read_total() : 0;
    double t0 = now_s(), c0 = cpu_s();
    fn();
    double dt = now_s() - t0, dc = cpu_s() - c0;
    double dy = g_cycles ? g_cycles->read_total() - y0 : 0;
    t.wall = std::min(t.wall, dt);
    t.cpu = std::min(t.cpu, dc);
    if (dy > 0) t.cycles = std::min(t.cycles, dy);
    total += dt;
    if (r > 50) break;
  }
  return t;
}

bool quant_available(DType t) {
  if (!dtype_traits(t).quantized) return true;
  try {
    float v[256] = {0};
    std::vector<float> out(256);
    std::vector<uint8_t> buf(dtype_row_bytes(t, 256) + 64);
    dequantize_row(t, buf.data(), out.data(), 256);
    (void)v;
    return true;
  } catch (const Error&) {
    return false;
  }
}

Tensor random_tensor(const std::vector<int64_t>& shape, float scale, uint32_t seed) {
  Tensor t = Tensor::empty(shape);
  uint32_t s = seed * 2654435761u + 12345u;
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) {
    // Sum of 4 uniforms ~ roughly normal, unit variance after scaling.
    float acc = 0;
    for (int j = 0; j < 4; ++j) {
      s = s * 1664525u + 1013904223u;
      acc += (float)((s >> 8) * (1.0 / 16777216.0)) - 0.5f;
    }
    p[i] = acc * 1.7320508f * scale;
  }
  return t;
}

// Weight of type t from f32 values (rows of k): needs the quantizer for block types.
Tensor make_weight(DType t, const Tensor& wf, const std::vector<int64_t>& shape, int64_t rows, int64_t k);

}  // namespace

#include "bench_kernels_weights.inc"

int main(int argc, char** argv) {
  bool quick = false;
  int threads = 0, reps = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: sdn_bench_kernels [--quick] [--threads N] [--reps N]\n");
      return 2;
    }
  }
  if (quick) reps = 2;
  set_default_threads(threads);
  ThreadPool& pool = default_pool();
  std::printf("CPU: %s\n", cpu_name().c_str());
  std::printf("SIMD level: %s (best %s), threads: %d\n", simd_name(simd_level()), simd_name(simd_best()), pool.size());
  static CycleCounters counters = open_cycle_counters(pool);
  if (counters.ok()) g_cycles = &counters;
  const Peak pk = measure_peak(pool, 3);
  const double peak = pk.wall_gf;
  std::printf("FP32 FMA peak (12-accumulator register loop, %d threads): %.1f GFLOP/s wall-clock", pool.size(),
              pk.wall_gf);
  if (g_cycles) std::printf("; %.1f FLOP per core cycle", pk.flops_per_cycle);
  std::printf("\n");
  std::printf("  %%peak: wall-clock GFLOP/s / wall-clock peak (disturbed when other processes share the cores)\n");
  if (g_cycles)
    std::printf("  %%cyc:  FLOPs per user-mode core cycle (all pool threads, busy-waiting included) / the FMA loop's;\n"
                "         unaffected by other processes: the figure to compare with the targets\n\n");
  else
    std::printf("  (no cycle counters available: %%cyc column omitted)\n\n");
  auto cyc_pct = [&](double flops, const Timing& t) {
    return (g_cycles && t.cycles < 1e29 && pk.flops_per_cycle > 0) ? 100.0 * (flops / t.cycles) / pk.flops_per_cycle
                                                                    : 0.0;
  };

  struct Shape {
    int64_t m, k, n;
  };
  const std::vector<Shape> shapes = {{4096, 320, 320}, {4096, 320, 1280}, {1024, 1280, 5120}, {77, 768, 3072}};
  const std::vector<DType> types = {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K};
  std::printf("linear y[M,N] = x[M,K] w[N,K]^T            GFLOP/s  %%peak    %%cyc      ms\n");
  for (const auto& s : shapes) {
    Tensor x = random_tensor({s.m, s.k}, 1.f, 1);
    Tensor wf = random_tensor({s.n, s.k}, 1.f / std::sqrt((float)s.k), 2);
    for (DType t : types) {
      char label[96];
      std::snprintf(label, sizeof label, "  M=%-5lld K=%-5lld N=%-5lld %-5s", (long long)s.m, (long long)s.k,
                    (long long)s.n, dtype_name(t));
      if (s.k % dtype_traits(t).block_size != 0) {
        std::printf("%s    n/a (K not a multiple of the %d-element block)\n", label, dtype_traits(t).block_size);
        continue;
      }
      if (!quant_available(t)) {
        std::printf("%s    n/a (type not implemented in this build)\n", label);
        continue;
      }
      Tensor w = make_weight(t, wf, {s.n, s.k}, s.n, s.k);
      Timing tm = best_time([&] { cpu::linear(x, w, nullptr); }, quick ? 2 : reps, quick ? 0.1 : 0.5);
      const double flops = 2.0 * s.m * s.n * s.k;
      double gf = flops / tm.wall / 1e9;
      std::printf("%s %8.1f %6.1f%% %6.1f%% %7.2f\n", label, gf, 100.0 * gf / peak, cyc_pct(flops, tm), tm.wall * 1e3);
    }
  }

  struct ConvShape {
    int64_t c, h, w, oc;
  };
  const std::vector<ConvShape> convs = {{320, 64, 64, 320}, {1280, 32, 32, 1280}, {128, 256, 256, 128}};
  std::printf("\nconv2d 3x3 stride 1 pad 1, batch 1 (effective GFLOP/s = direct-conv FLOPs / time)\n");
  std::printf("                                             GFLOP/s  %%peak    %%cyc\n");
  for (const auto& cs : convs) {
    Tensor x = random_tensor({1, cs.c, cs.h, cs.w}, 1.f, 3);
    Tensor wf = random_tensor({cs.oc, cs.c * 9}, 1.f / std::sqrt((float)(cs.c * 9)), 4);
    const double flops = 2.0 * cs.oc * cs.h * cs.w * cs.c * 9;
    for (DType t : {DType::F32, DType::F16}) {
      Tensor w = make_weight(t, wf, {cs.oc, cs.c, 3, 3}, cs.oc, cs.c * 9);
      for (auto algo : {cpu::ConvAlgo::Auto, cpu::ConvAlgo::Im2col}) {
        if (algo == cpu::ConvAlgo::Im2col && (quick || t != DType::F32)) continue;
        Timing tm = best_time([&] { cpu::conv2d_with(x, w, nullptr, 1, 1, algo); }, quick ? 2 : reps,
                              quick ? 0.1 : 0.5);
        double gf = flops / tm.wall / 1e9;
        std::printf("  %4lldx%-4lld C=%-5lld OC=%-5lld %-4s %-7s %8.1f %6.1f%% %6.1f%% %8.2f ms\n", (long long)cs.h,
                    (long long)cs.w, (long long)cs.c, (long long)cs.oc, dtype_name(t),
                    algo == cpu::ConvAlgo::Auto ? "auto" : "im2col", gf, 100.0 * gf / peak, cyc_pct(flops, tm),
                    tm.wall * 1e3);
      }
    }
  }

  // Accuracy of the conv algorithms against a direct f64 convolution (x ~ N(0,1), w ~ N(0, 1/fan_in)), on the
  // first 4 output channels.
  std::printf("\nconv2d 3x3 accuracy vs f64 direct convolution (first 4 output channels; output RMS ~1)\n");
  for (const auto& cs : convs) {
    if (quick && cs.c > 320) continue;
    Tensor x = random_tensor({1, cs.c, cs.h, cs.w}, 1.f, 5);
    Tensor wf = random_tensor({cs.oc, cs.c * 9}, 1.f / std::sqrt((float)(cs.c * 9)), 6);
    Tensor w = make_weight(DType::F32, wf, {cs.oc, cs.c, 3, 3}, cs.oc, cs.c * 9);
    const int64_t H = cs.h, W = cs.w, P = H * W, nc = 4;
    std::vector<double> ref((size_t)(nc * P), 0.0);
    for (int64_t o = 0; o < nc; ++o)
      for (int64_t c = 0; c < cs.c; ++c)
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 3; ++j) {
            const double wv = wf.f32()[o * cs.c * 9 + c * 9 + i * 3 + j];
            for (int64_t y = 0; y < H; ++y) {
              const int64_t iy = y - 1 + i;
              if (iy < 0 || iy >= H) continue;
              const float* xr = x.f32() + c * P + iy * W;
              double* rr = ref.data() + o * P + y * W;
              for (int64_t q = 0; q < W; ++q) {
                const int64_t ix = q - 1 + j;
                if (ix >= 0 && ix < W) rr[q] += wv * xr[ix];
              }
            }
          }
    double rms_ref = 0;
    for (double v : ref) rms_ref += v * v;
    rms_ref = std::sqrt(rms_ref / ref.size());
    for (auto algo : {cpu::ConvAlgo::Winograd, cpu::ConvAlgo::Im2col}) {
      Tensor y = cpu::conv2d_with(x, w, nullptr, 1, 1, algo);
      double max_err = 0, se = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        double e = std::fabs((double)y.f32()[i] - ref[i]);
        max_err = std::max(max_err, e);
        se += e * e;
      }
      std::printf("  %4lldx%-4lld C=%-5lld %-8s max|err| %.2e  rms err %.2e  (output rms %.3f, rel rms %.1e)\n",
                  (long long)H, (long long)W, (long long)cs.c,
                  algo == cpu::ConvAlgo::Winograd ? "winograd" : "im2col", max_err, std::sqrt(se / ref.size()), rms_ref,
                  std::sqrt(se / ref.size()) / rms_ref);
    }
  }
  return 0;
}
