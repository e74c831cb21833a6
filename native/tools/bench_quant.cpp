// Quantization formats: round-trip error on Gaussian data and throughput of quantize / dequantize / dot per
// SIMD level.  Usage: sdn_bench_quant [elements=4194304] [types=all (comma-separated names)]
// Throughput is the best of 5 runs, single thread, in millions of elements per second.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/quant.h"

using namespace sdn;

template <typename F>
static double best_seconds(F&& f, int reps = 5) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  return best;
}

int main(int argc, char** argv) {
  int64_t n = argc > 1 ? std::atoll(argv[1]) : (int64_t)1 << 22;
  n = (n / 256) * 256;
  std::string only = argc > 2 ? argv[2] : "";
  const DType types[] = {DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                         DType::Q5_0, DType::Q5_1, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                         DType::Q6_K};
  std::mt19937 gen(42);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x((size_t)n), y((size_t)n), a((size_t)n);
  for (auto& v : x) v = dist(gen);
  for (auto& v : a) v = dist(gen);
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON})
    if (simd_supported(l)) levels.push_back(l);
  const SimdLevel saved = simd_level();
  std::printf("n = %lld elements, N(0,1) data; throughput in M elements/s (best of 5, 1 thread)\n", (long long)n);
  std::printf("%-6s %10s %10s", "type", "rel_rms", "quantize");
  for (SimdLevel l : levels) std::printf("  deq_%-7s dot_%-7s", simd_name(l), simd_name(l));
  std::printf("\n");
  volatile float sink = 0;
  for (DType t : types) {
    if (!only.empty() && ("," + only + ",").find("," + std::string(dtype_name(t)) + ",") == std::string::npos)
      continue;
    std::vector<uint8_t> q(dtype_row_bytes(t, n));
    double tq = best_seconds([&] { quantize_row(t, x.data(), q.data(), n); }, 2);
    dequantize_row(t, q.data(), y.data(), n);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
      num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
      den += (double)x[i] * x[i];
    }
    std::printf("%-6s %10.5f %10.1f", dtype_name(t), std::sqrt(num / den), n / tq / 1e6);
    for (SimdLevel l : levels) {
      simd_set_level(l);
      // dequantize in 4096-element rows so the output stays in cache-sized pieces, as GEMM packing does
      double td = best_seconds([&] {
        const int64_t cols = 4096, rows = n / cols;
        dequantize_rows(t, q.data(), dtype_row_bytes(t, cols), rows, cols, y.data(), cols);
      });
      double tdot = best_seconds([&] {
        float s = 0;
        for (int64_t i = 0; i < n; i += 4096) s += dot_row(t, q.data() + dtype_row_bytes(t, i), a.data() + i, 4096);
        sink = sink + s;
      });
      std::printf("  %11.1f %11.1f", n / td / 1e6, n / tdot / 1e6);
    }
    std::printf("\n");
    simd_set_level(saved);
  }
  return 0;
}
