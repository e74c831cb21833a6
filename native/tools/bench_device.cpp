// Kernel speed of one device backend at Stable Diffusion 1.x shapes (SD 1.5 at 256x256: 32x32 latent).
//   sdn_bench_device [--device vulkan|vulkan:N|cpu] [--reps N] [--filter SUBSTR]
// Each case: inputs uploaded and weights prepared once, one warm-up run, then the best of N runs (default 2),
// each ended by synchronize(). Prints GFLOP/s (2*M*N*K for linear/conv, 4*B*H*Tq*Tk*D for attention) by wall
// clock and per CPU-second of the process (all threads: on a shared machine the per-CPU-second figure is the
// steadier one; on lavapipe it includes the driver's worker threads).
// On the Vulkan backend, SDN_VULKAN_KERNELS=tiled|blocked forces a GEMM/attention variant and
// SDN_VULKAN_FEATURES=none|all|subgroup,f16,int8 the device-feature variants (see vulkan_backend.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <time.h>

#include "backends/backend.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "sdn/error.h"

using namespace sdn;

namespace {

Tensor rnd(const std::vector<int64_t>& shape, uint32_t seed, float amp = 1.f) {
  Tensor t = Tensor::empty(shape);
  uint32_t s = seed * 2654435761u + 1u;
  float* p = t.f32();
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = amp * (2.f * (float)(s >> 8) * (1.0f / 16777216.0f) - 1.f);
  }
  return t;
}

// [rows, cols] (or [OC, C, KH, KW]) weights of type t, rows along dimension 0
Tensor weight(const std::vector<int64_t>& shape, DType t, uint32_t seed) {
  Tensor f = rnd(shape, seed, 0.05f);
  if (t == DType::F32) return f;
  const int64_t rows = shape[0], cols = f.numel() / rows;
  const size_t rb = dtype_row_bytes(t, cols);
  auto store = std::shared_ptr<uint8_t>(new uint8_t[rb * rows], std::default_delete<uint8_t[]>());
  for (int64_t r = 0; r < rows; ++r) quantize_row(t, f.f32() + r * cols, store.get() + r * rb, cols);
  return Tensor::wrap(store.get(), shape, t, store);
}

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Best wall-clock seconds of `reps` runs; *cpu gets the least process CPU time of a run (all threads, lavapipe's
// included), which other processes on a shared machine do not inflate.
double best_seconds(Backend& be, int reps, const std::function<Tensor()>& fn, double* cpu) {
  be.to_host(fn());  // warm-up (pipeline creation)
  double best = 1e30, cbest = 1e30;
  for (int r = 0; r < reps; ++r) {
    double c0 = cpu_now();
    auto t0 = std::chrono::steady_clock::now();
    Tensor y = fn();
    be.synchronize();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    cbest = std::min(cbest, cpu_now() - c0);
  }
  *cpu = cbest;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "vulkan", filter;
  int reps = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") device = val();
    else if (a == "--reps") reps = std::max(1, std::atoi(val().c_str()));
    else if (a == "--filter") filter = val();
    else {
      std::fprintf(stderr, "usage: sdn_bench_device [--device vulkan|vulkan:N|cpu] [--reps N] [--filter SUBSTR]\n");
      return 2;
    }
  }
  try {
    BackendChoice ch = create_backend(device, {});
    Backend& be = *ch.backend;
    std::printf("device: %s\n", ch.description.c_str());
    const char* var = std::getenv("SDN_VULKAN_KERNELS");
    if (var) std::printf("SDN_VULKAN_KERNELS=%s\n", var);
    const char* feat = std::getenv("SDN_VULKAN_FEATURES");
    if (feat) std::printf("SDN_VULKAN_FEATURES=%s\n", feat);
    if (!be.device_info().kernels.empty()) std::printf("kernels: %s\n", be.device_info().kernels.c_str());
    auto run = [&](const std::string& name, double flop, const std::function<Tensor()>& fn) {
      if (!filter.empty() && name.find(filter) == std::string::npos) return;
      double cpu = 0;
      double s = best_seconds(be, reps, fn, &cpu);
      std::printf("%-46s %9.2f ms %8.2f GFLOP/s %8.2f GFLOP/cpu-s\n", name.c_str(), s * 1e3, flop / s * 1e-9,
                  flop / cpu * 1e-9);
      std::fflush(stdout);
    };
    struct Lin { int64_t M, K, N; };
    const Lin lins[] = {{2048, 320, 320}, {2048, 320, 2560}, {2048, 1280, 320}, {154, 768, 320}};
    for (DType t : {DType::F16, DType::Q8_0, DType::F32, DType::Q4_K}) {
      for (const Lin& l : lins) {
        char name[96];
        std::snprintf(name, sizeof name, "linear %s M%lld K%lld N%lld", dtype_name(t), (long long)l.M,
                      (long long)l.K, (long long)l.N);
        if (!filter.empty() && std::string(name).find(filter) == std::string::npos) continue;
        if (t == DType::Q4_K && l.K % 256) continue;
        Tensor x = be.upload(rnd({l.M, l.K}, 1));
        Tensor w = be.prepare_weight(weight({l.N, l.K}, t, 2));
        Tensor b = be.prepare_weight(rnd({l.N}, 3));
        run(name, 2.0 * l.M * l.N * l.K, [&] { return be.linear(x, w, &b); });
      }
    }
    struct Conv { int64_t B, C, H, OC, KS; int stride; const char* what; };
    const Conv convs[] = {{2, 320, 32, 320, 3, 1, "unet"}, {2, 640, 16, 640, 3, 1, "unet"},
                          {2, 1280, 8, 1280, 3, 1, "unet"}, {1, 512, 32, 512, 3, 1, "vae"},
                          {1, 256, 128, 256, 3, 1, "vae"}, {1, 128, 256, 128, 3, 1, "vae"},
                          {2, 320, 32, 320, 1, 1, "unet 1x1"}, {2, 320, 32, 320, 3, 2, "unet down"}};
    for (DType t : {DType::F16, DType::Q8_0}) {
      for (const Conv& c : convs) {
        char name[96];
        std::snprintf(name, sizeof name, "conv%lldx%lld/%d %s %s B%lld C%lld %lldx%lld OC%lld", (long long)c.KS,
                      (long long)c.KS, c.stride, c.what, dtype_name(t), (long long)c.B, (long long)c.C,
                      (long long)c.H, (long long)c.H, (long long)c.OC);
        if (!filter.empty() && std::string(name).find(filter) == std::string::npos) continue;
        const int pad = c.KS == 3 ? 1 : 0;
        const int64_t OH = (c.H + 2 * pad - c.KS) / c.stride + 1;
        Tensor x = be.upload(rnd({c.B, c.C, c.H, c.H}, 4));
        Tensor w = be.prepare_weight(weight({c.OC, c.C, c.KS, c.KS}, t, 5));
        Tensor b = be.prepare_weight(rnd({c.OC}, 6));
        run(name, 2.0 * c.B * OH * OH * c.OC * c.C * c.KS * c.KS,
            [&] { return be.conv2d(x, w, &b, c.stride, pad); });
      }
    }
    struct Att { int64_t B, Tq, Tk, H, D; const char* what; };
    const Att atts[] = {{2, 1024, 1024, 8, 40, "self"}, {2, 1024, 77, 8, 40, "cross"}, {2, 64, 64, 8, 160, "self"},
                        {1, 1024, 1024, 1, 512, "vae"}, {2, 256, 256, 2, 320, "wide"}};
    for (const Att& a : atts) {
      char name[96];
      std::snprintf(name, sizeof name, "attention %s B%lld Tq%lld Tk%lld H%lld D%lld", a.what, (long long)a.B,
                    (long long)a.Tq, (long long)a.Tk, (long long)a.H, (long long)a.D);
      if (!filter.empty() && std::string(name).find(filter) == std::string::npos) continue;
      Tensor q = be.upload(rnd({a.B, a.Tq, a.H * a.D}, 7));
      Tensor k = be.upload(rnd({a.B, a.Tk, a.H * a.D}, 8));
      Tensor v = be.upload(rnd({a.B, a.Tk, a.H * a.D}, 9));
      run(name, 4.0 * a.B * a.H * a.Tq * a.Tk * a.D, [&] { return be.attention(q, k, v, (int)a.H, false); });
    }
    // row reductions (norm.comp / softmax.comp; subgroup variants): the GFLOP/s columns count elements here
    struct Red { const char* what; std::vector<int64_t> shape; };
    const Red reds[] = {{"group_norm+silu unet 32 groups", {2, 320, 32, 32}},
                        {"layer_norm unet", {2, 1024, 320}},
                        {"softmax rows of 77", {2 * 8 * 1024, 77}}};
    for (const Red& r : reds) {
      std::string name = std::string(r.what) + " [Gelem/s]";
      if (!filter.empty() && name.find(filter) == std::string::npos) continue;
      Tensor x = be.upload(rnd(r.shape, 10));
      const int64_t C = r.shape[1];
      Tensor g = be.prepare_weight(rnd({r.shape.size() == 4 ? C : r.shape.back()}, 11));
      Tensor b = be.prepare_weight(rnd({r.shape.size() == 4 ? C : r.shape.back()}, 12));
      double n = (double)x.numel();
      if (r.shape.size() == 4) run(name, n, [&] { return be.group_norm(x, 32, 1e-5f, &g, &b, true); });
      else if (std::string(r.what).rfind("layer", 0) == 0) run(name, n, [&] { return be.layer_norm(x, 1e-5f, &g, &b); });
      else run(name, n, [&] { return be.softmax(x); });
    }
    be.trim();
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
