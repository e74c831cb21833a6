// Cross-backend operator tests: every operation of backends/backend.h, every weight type where the operation takes
// weights, odd shapes, random non-zero inputs, against double-precision references written here, on EVERY usable
// device of every compiled-in backend (the CPU, and e.g. each Vulkan device, software ones included). Inputs go in
// with upload()/prepare_weight() and results come back with to_host(), so device memory handling is exercised too.
//
// Each case states its tolerance: |got - ref| <= rel * scale + abs per element, where `scale` is the sum of the
// magnitudes of the terms of that element for reductions (linear, conv2d, attention) and |ref| otherwise.
// An operation a device does not support (supports() false) is reported on stderr as "SKIP: ..." (it would run on
// the CPU fallback) and is not a failure; a device listed as usable that cannot be created is a failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "kernel_test_util.h"
#include "sdn/error.h"
#include "test.h"

using namespace sdn;
using sdntest::random_vector;

namespace {

struct Dev {
  std::string id;
  std::shared_ptr<Backend> be;
  bool feature_variant = false;  // a Vulkan instance with the device-feature kernels (SDN_VULKAN_FEATURES=all)
};

// Weight types run on the device-feature variants' GEMM and row-gather kernels (every type with
// SDN_TEST_ALL_VARIANT_TYPES=1). Building a pipeline is what costs on lavapipe (a cold Mesa shader cache compiles
// every module with LLVM), and the feature modules of the other types read their weights through exactly the same
// load functions (dequant.glsl: rd8/rds8/rd16/rd32u/rdf16) as one of these: Q4_0/Q4_1/Q5_0 share Q5_1's block code
// (other constants), Q4_K shares Q5_K's. Those constants are checked on the plain variants, which run every type.
bool feature_variant_type(DType t) {
  static const bool all = [] {
    const char* v = std::getenv("SDN_TEST_ALL_VARIANT_TYPES");
    return v && *v && *v != '0';
  }();
  return all || t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q5_1 ||
         t == DType::Q5_K || t == DType::Q6_K;
}

// Every usable device, created once per test binary run (raw backends: no CPU fallback wrapper).
const std::vector<Dev>& devices() {
  static std::vector<Dev> list = [] {
    std::vector<Dev> v;
    for (BackendFactory* f : backend_factories()) {
      std::vector<DeviceInfo> devs = f->devices();
      if (devs.empty() && std::string(f->name()) != "cpu")
        std::fprintf(stderr, "SKIP: backend_ops on %s: %s\n", f->name(), f->unavailable_reason().c_str());
      for (const DeviceInfo& d : devs) {
        if (!d.usable) {
          std::fprintf(stderr, "SKIP: backend_ops on %s (%s): unusable: %s\n", d.id.c_str(), d.name.c_str(),
                       d.unusable_reason.c_str());
          continue;
        }
        if (std::string(f->name()) == "vulkan") {
          // Every kernel variant on every Vulkan device: both GEMM/attention variants (the backend picks one per
          // device kind; SDN_VULKAN_KERNELS forces one), each with the plain kernels (SDN_VULKAN_FEATURES=none)
          // and with every device-feature variant the device offers (=all: subgroup reductions in norm/softmax,
          // f16 weights as float16_t, quantized weights as int8/uint8). The features select disjoint modules
          // (norm/softmax; f16/bf16 weight kernels; quantized weight kernels), so none + all run every module.
          // Both variables are read when an instance is created.
          const char* names[] = {"SDN_VULKAN_KERNELS", "SDN_VULKAN_FEATURES"};
          std::string saved[2];
          bool had[2];
          for (int i = 0; i < 2; ++i) {
            const char* p = std::getenv(names[i]);
            had[i] = p != nullptr;
            saved[i] = p ? p : "";
          }
          for (const char* variant : {"tiled", "blocked"})
            for (const char* features : {"none", "all"}) {
              setenv("SDN_VULKAN_KERNELS", variant, 1);
              setenv("SDN_VULKAN_FEATURES", features, 1);
              std::shared_ptr<Backend> be = f->create(d.index, {});
              std::fprintf(stderr, "backend_ops: %s %s/%s: %s\n", d.id.c_str(), variant, features,
                           be->device_info().kernels.c_str());
              v.push_back({d.id + " (" + variant + " kernels, features " + features + ")", be,
                           std::string(features) == "all"});
            }
          for (int i = 0; i < 2; ++i) {
            if (had[i]) setenv(names[i], saved[i].c_str(), 1);
            else unsetenv(names[i]);
          }
          // the cooperative-matrix GEMM, where the device passes its self-check (the forced variants above keep
          // to the plain kernels)
          if (!had[0]) {
            std::shared_ptr<Backend> cm = f->create(d.index, {});
            const std::string st = cm->device_info().cooperative_matrix_kernel;
            if (st.rfind("in use", 0) == 0) v.push_back({d.id + " (cooperative-matrix kernel)", cm, false});  // every weight type
            else std::fprintf(stderr, "SKIP: backend_ops with the cooperative-matrix kernel on %s: %s\n", d.id.c_str(), st.c_str());
          }
          continue;
        }
        v.push_back({d.id, f->create(d.index, {})});
      }
    }
    return v;
  }();
  return list;
}

// Runs fn on each device that supports (op, weight type); reports the others.
void for_devices(Op op, DType wt, const std::function<void(const Dev&)>& fn) {
  for (const Dev& d : devices()) {
    if (!d.be->supports(op, wt)) {
      std::fprintf(stderr, "SKIP: backend_ops.%s(%s) on %s: not supported by the device (runs on the CPU fallback)\n",
                   op_name(op), dtype_name(wt), d.id.c_str());
      continue;
    }
    if (d.feature_variant && (op == Op::Linear || op == Op::Conv2d || op == Op::GetRows) && !feature_variant_type(wt)) {
      std::fprintf(stderr, "SKIP: backend_ops.%s(%s) on %s: the feature variant runs the representative weight types "
                           "(this type's loads are those of another; SDN_TEST_ALL_VARIANT_TYPES=1 runs it)\n",
                   op_name(op), dtype_name(wt), d.id.c_str());
      continue;
    }
    try {
      fn(d);
    } catch (const sdntest::Failure& f) {
      SDN_FAIL("[" << d.id << " " << op_name(op) << " " << dtype_name(wt) << "] " << f.message);
    } catch (const Error& e) {
      SDN_FAIL("[" << d.id << " " << op_name(op) << " " << dtype_name(wt) << "] threw: " << e.what());
    }
  }
}

Tensor host_tensor(const std::vector<int64_t>& shape, const std::vector<float>& v) { return Tensor::from_vector(shape, v); }

std::vector<float> fetch(Backend& be, const Tensor& t) {
  Tensor h = be.to_host(t);
  if (h.dtype != DType::F32) SDN_FAIL("result is " << h.shape_str() << ", expected f32");
  h = h.contiguous();
  return std::vector<float>(h.f32(), h.f32() + h.numel());
}

void expect_shape(const Tensor& t, const std::vector<int64_t>& want) {
  if (t.sizes() != want) {
    std::string w = "[";
    for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
    SDN_FAIL("result shape " << t.shape_str() << ", expected " << w << "]");
  }
}

// |got - ref| <= rel * scale + abs (scale defaults to |ref|).
void check(const std::vector<float>& got, const std::vector<double>& ref, double rel, double abs, const char* what,
           const std::vector<double>* scale = nullptr) {
  if (got.size() != ref.size()) SDN_FAIL(what << ": " << got.size() << " values, expected " << ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    double s = scale ? (*scale)[i] : std::fabs(ref[i]);
    double err = std::fabs((double)got[i] - ref[i]);
    if (!(err <= rel * s + abs))
      SDN_FAIL(what << ": element " << i << " got " << got[i] << " want " << ref[i] << " (err " << err << ", tol "
                    << rel * s + abs << ")");
  }
}

std::vector<double> to_d(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

TEST(backend_ops, devices_are_listed_and_creatable) {
  EXPECT_TRUE(!devices().empty());
  EXPECT_EQ(devices()[0].id, std::string("cpu"));
  for (const Dev& d : devices()) {
    DeviceInfo info = d.be->device_info();
    EXPECT_TRUE(!info.name.empty());
    for (int i = 0; i < kOpCount; ++i) EXPECT_TRUE(std::string(op_name(static_cast<Op>(i))) != "unknown");
  }
}

TEST(backend_ops, upload_to_host_write_roundtrip) {
  for_devices(Op::Scale, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    auto v = random_vector(3 * 5 * 7, 1);
    Tensor t = be.upload(host_tensor({3, 5, 7}, v));
    check(fetch(be, t), to_d(v), 0, 0, "upload/to_host");
    auto w = random_vector(3 * 5 * 7, 2);
    Tensor dst = be.empty({3, 5, 7}, DType::F32);
    be.write(dst, host_tensor({3, 5, 7}, w));
    check(fetch(be, dst), to_d(w), 0, 0, "write");
    // a slice0 view of a backend tensor reads the right rows
    check(fetch(be, t.slice0(1, 3)), std::vector<double>(v.begin() + 35, v.end()), 0, 0, "slice0");
    be.synchronize();
    be.trim();
    MemoryStats m = be.memory_stats();
    (void)m;
  });
}

TEST(backend_ops, linear_every_weight_type) {
  for (DType wt : sdntest::kernel_weight_types()) {
    const bool kq = dtype_traits(wt).block_size == 256;
    // odd K, and K % 4 == 0 (the Vulkan register-blocked kernel's paired loads)
    for (int64_t K : kq ? std::vector<int64_t>{256} : dtype_traits(wt).block_size > 1 ? std::vector<int64_t>{96}
                                                                                    : std::vector<int64_t>{37, 64})
    for (int64_t M : {1, 7, 77})
      for (int64_t N : {3, 33}) {
        for (bool bias : {false, true}) {
          std::vector<float> wdeq;
          Tensor w = sdntest::make_weight(wt, {N, K}, N, K, (uint32_t)(M * 131 + N * 7 + K), &wdeq);
          auto x = random_vector((size_t)(M * K), (uint32_t)(M + N + 5));
          auto b = random_vector((size_t)N, 77);
          std::vector<double> ref((size_t)(M * N)), scale((size_t)(M * N));
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double acc = bias ? b[(size_t)n] : 0.0, s = bias ? std::fabs(b[(size_t)n]) : 0.0;
              for (int64_t k = 0; k < K; ++k) {
                double term = (double)x[(size_t)(m * K + k)] * wdeq[(size_t)(n * K + k)];
                acc += term;
                s += std::fabs(term);
              }
              ref[(size_t)(m * N + n)] = acc;
              scale[(size_t)(m * N + n)] = s;
            }
          for_devices(Op::Linear, wt, [&](const Dev& d) {
            Backend& be = *d.be;
            Tensor pw = be.prepare_weight(w);
            Tensor pb = be.prepare_weight(host_tensor({N}, b));
            // leading dims [M] or [1, M]
            Tensor xin = be.upload(host_tensor({1, M, K}, x));
            Tensor y = be.linear(xin, pw, bias ? &pb : nullptr);
            expect_shape(y, {1, M, N});
            check(fetch(be, y), ref, 1e-3, 1e-5, "linear", &scale);
          });
        }
      }
  }
}

TEST(backend_ops, conv2d_every_weight_type) {
  for (DType wt : sdntest::kernel_weight_types()) {
    const int bs = dtype_traits(wt).block_size;
    for (int k : {1, 3})
      for (int stride : {1, 2})
        for (int pad : {0, 1})
          for (int64_t W : {9, 32, 8}) {
          if (k == 1 && pad == 1) continue;
          // W = 32 and 8 (3x3 / stride 1 / pad 1 and 1x1 / stride 1): the Vulkan register-blocked kernel's
          // row-segment (16 and 8 pixels) and 1x1 paths (even C, 16 | OH*OW)
          if (W != 9 && !(stride == 1 && pad == (k == 3 ? 1 : 0))) continue;
          const int64_t C = bs == 256 ? 256 : bs > 1 ? 32 : W == 9 ? 5 : 6;
          const int64_t B = 2, H = W == 9 ? 7 : W == 32 ? 3 : 6, OC = W == 9 ? 6 : 11;
          const int64_t OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
          std::vector<float> wdeq;
          Tensor w = sdntest::make_weight(wt, {OC, C, k, k}, OC, C * k * k, (uint32_t)(C + k * 3 + stride), &wdeq);
          auto x = random_vector((size_t)(B * C * H * W), (uint32_t)(k + 11 * stride + pad));
          auto b = random_vector((size_t)OC, 5);
          std::vector<double> ref((size_t)(B * OC * OH * OW)), scale(ref.size());
          for (int64_t n = 0; n < B; ++n)
            for (int64_t o = 0; o < OC; ++o)
              for (int64_t oy = 0; oy < OH; ++oy)
                for (int64_t ox = 0; ox < OW; ++ox) {
                  double acc = b[(size_t)o], s = std::fabs(b[(size_t)o]);
                  for (int64_t c = 0; c < C; ++c)
                    for (int ky = 0; ky < k; ++ky)
                      for (int kx = 0; kx < k; ++kx) {
                        int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        double term = (double)x[(size_t)(((n * C + c) * H + iy) * W + ix)] *
                                      wdeq[(size_t)(((o * C + c) * k + ky) * k + kx)];
                        acc += term;
                        s += std::fabs(term);
                      }
                  size_t i = (size_t)(((n * OC + o) * OH + oy) * OW + ox);
                  ref[i] = acc;
                  scale[i] = s;
                }
          for_devices(Op::Conv2d, wt, [&](const Dev& d) {
            Backend& be = *d.be;
            Tensor pw = be.prepare_weight(w);
            Tensor pb = be.prepare_weight(host_tensor({OC}, b));
            Tensor y = be.conv2d(be.upload(host_tensor({B, C, H, W}, x)), pw, &pb, stride, pad);
            expect_shape(y, {B, OC, OH, OW});
            check(fetch(be, y), ref, 1e-3, 1e-5, "conv2d", &scale);
          });
        }
  }
}

TEST(backend_ops, group_norm) {
  struct Case {
    std::vector<int64_t> shape;
    int groups;
    bool affine, silu;
  };
  for (const Case& cs : {Case{{2, 12, 5, 7}, 3, true, false}, Case{{2, 12, 5, 7}, 4, true, true},
                         Case{{1, 8, 11}, 2, false, false}, Case{{3, 6, 1, 1}, 6, true, true},
                         Case{{1, 4, 30, 31}, 2, true, false}}) {  // groups of 1860 (> 256 per invocation row)
    const int64_t B = cs.shape[0], C = cs.shape[1];
    int64_t L = 1;
    for (size_t i = 2; i < cs.shape.size(); ++i) L *= cs.shape[i];
    auto x = random_vector((size_t)(B * C * L), 31, -2.f, 3.f);
    auto g = random_vector((size_t)C, 32), bt = random_vector((size_t)C, 33);
    const double eps = 1e-5;
    std::vector<double> ref(x.size());
    const int64_t cpg = C / cs.groups;
    for (int64_t n = 0; n < B; ++n)
      for (int gi = 0; gi < cs.groups; ++gi) {
        double mean = 0, var = 0;
        const int64_t base = (n * C + gi * cpg) * L, cnt = cpg * L;
        for (int64_t i = 0; i < cnt; ++i) mean += x[(size_t)(base + i)];
        mean /= (double)cnt;
        for (int64_t i = 0; i < cnt; ++i) var += ((double)x[(size_t)(base + i)] - mean) * ((double)x[(size_t)(base + i)] - mean);
        var /= (double)cnt;
        for (int64_t i = 0; i < cnt; ++i) {
          int64_t c = gi * cpg + i / L;
          double v = ((double)x[(size_t)(base + i)] - mean) / std::sqrt(var + eps);
          if (cs.affine) v = v * g[(size_t)c] + bt[(size_t)c];
          if (cs.silu) v = v / (1.0 + std::exp(-v));
          ref[(size_t)(base + i)] = v;
        }
      }
    for_devices(Op::GroupNorm, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor pg = be.prepare_weight(host_tensor({C}, g)), pb = be.prepare_weight(host_tensor({C}, bt));
      Tensor y = be.group_norm(be.upload(host_tensor(cs.shape, x)), cs.groups, (float)eps, cs.affine ? &pg : nullptr,
                               cs.affine ? &pb : nullptr, cs.silu);
      expect_shape(y, cs.shape);
      check(fetch(be, y), ref, 1e-4, 1e-5, "group_norm");
    });
  }
}

TEST(backend_ops, layer_norm) {
  for (bool affine : {false, true})
    for (int64_t D : {33, 320}) {
      const int64_t R = 2 * 7;
      auto x = random_vector((size_t)(R * D), 41, -1.f, 2.f);
      auto g = random_vector((size_t)D, 42), bt = random_vector((size_t)D, 43);
      std::vector<double> ref(x.size());
      for (int64_t r = 0; r < R; ++r) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < D; ++i) mean += x[(size_t)(r * D + i)];
        mean /= (double)D;
        for (int64_t i = 0; i < D; ++i) var += std::pow((double)x[(size_t)(r * D + i)] - mean, 2);
        var /= (double)D;
        for (int64_t i = 0; i < D; ++i) {
          double v = ((double)x[(size_t)(r * D + i)] - mean) / std::sqrt(var + 1e-5);
          ref[(size_t)(r * D + i)] = affine ? v * g[(size_t)i] + bt[(size_t)i] : v;
        }
      }
      for_devices(Op::LayerNorm, DType::F32, [&](const Dev& d) {
        Backend& be = *d.be;
        Tensor pg = be.prepare_weight(host_tensor({D}, g)), pb = be.prepare_weight(host_tensor({D}, bt));
        Tensor y = be.layer_norm(be.upload(host_tensor({2, 7, D}, x)), 1e-5f, affine ? &pg : nullptr,
                                 affine ? &pb : nullptr);
        expect_shape(y, {2, 7, D});
        check(fetch(be, y), ref, 1e-4, 1e-5, "layer_norm");
      });
    }
}

TEST(backend_ops, softmax) {
  for (int64_t D : {1, 37, 1000}) {
    const int64_t R = 3 * 5;
    auto x = random_vector((size_t)(R * D), 51, -8.f, 8.f);
    std::vector<double> ref(x.size());
    for (int64_t r = 0; r < R; ++r) {
      double mx = -1e300, sum = 0;
      for (int64_t i = 0; i < D; ++i) mx = std::max(mx, (double)x[(size_t)(r * D + i)]);
      for (int64_t i = 0; i < D; ++i) sum += std::exp((double)x[(size_t)(r * D + i)] - mx);
      for (int64_t i = 0; i < D; ++i) ref[(size_t)(r * D + i)] = std::exp((double)x[(size_t)(r * D + i)] - mx) / sum;
    }
    for_devices(Op::Softmax, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor y = be.softmax(be.upload(host_tensor({3, 5, D}, x)));
      check(fetch(be, y), ref, 1e-5, 1e-7, "softmax");
    });
  }
}

TEST(backend_ops, attention) {
  struct Case {
    int64_t B, Tq, Tk;
    int heads;
    int64_t D;
    bool causal;
  };
  for (const Case& cs : {Case{2, 7, 9, 3, 8, false}, Case{1, 7, 7, 2, 40, true}, Case{2, 33, 77, 1, 64, false},
                         Case{1, 5, 3, 2, 80, false}, Case{1, 9, 9, 1, 160, true}, Case{1, 1, 1, 1, 33, false},
                         Case{1, 300, 300, 1, 24, false}, Case{1, 9, 11, 1, 320, false},
                         Case{1, 6, 6, 1, 512, true}}) {
    const int64_t HD = cs.heads * cs.D;
    auto q = random_vector((size_t)(cs.B * cs.Tq * HD), 61, -2.f, 2.f);
    auto k = random_vector((size_t)(cs.B * cs.Tk * HD), 62, -2.f, 2.f);
    auto v = random_vector((size_t)(cs.B * cs.Tk * HD), 63);
    std::vector<double> ref(q.size()), scale(q.size());
    const double sc = 1.0 / std::sqrt((double)cs.D);
    for (int64_t b = 0; b < cs.B; ++b)
      for (int h = 0; h < cs.heads; ++h)
        for (int64_t i = 0; i < cs.Tq; ++i) {
          std::vector<double> s((size_t)cs.Tk);
          double mx = -1e300;
          const int64_t kend = cs.causal ? std::min(cs.Tk, i + 1) : cs.Tk;
          for (int64_t j = 0; j < kend; ++j) {
            double acc = 0;
            for (int64_t e = 0; e < cs.D; ++e)
              acc += (double)q[(size_t)((b * cs.Tq + i) * HD + h * cs.D + e)] * k[(size_t)((b * cs.Tk + j) * HD + h * cs.D + e)];
            s[(size_t)j] = acc * sc;
            mx = std::max(mx, s[(size_t)j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < kend; ++j) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - mx));
          for (int64_t e = 0; e < cs.D; ++e) {
            double acc = 0, mag = 0;
            for (int64_t j = 0; j < kend; ++j) {
              double t = s[(size_t)j] / sum * v[(size_t)((b * cs.Tk + j) * HD + h * cs.D + e)];
              acc += t;
              mag += std::fabs(t);
            }
            size_t idx = (size_t)((b * cs.Tq + i) * HD + h * cs.D + e);
            ref[idx] = acc;
            scale[idx] = mag + 1.0;  // softmax weights carry their own error: relative to |v| ~ 1
          }
        }
    for_devices(Op::Attention, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor y = be.attention(be.upload(host_tensor({cs.B, cs.Tq, HD}, q)), be.upload(host_tensor({cs.B, cs.Tk, HD}, k)),
                              be.upload(host_tensor({cs.B, cs.Tk, HD}, v)), cs.heads, cs.causal);
      expect_shape(y, {cs.B, cs.Tq, HD});
      check(fetch(be, y), ref, 1e-3, 1e-6, "attention", &scale);
    });
  }
}

TEST(backend_ops, unary_and_geglu) {
  auto x = random_vector(3 * 37, 71, -5.f, 5.f);
  auto gelu = [](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); };
  for (UnaryOp op : {UnaryOp::Silu, UnaryOp::GeluErf, UnaryOp::GeluTanh, UnaryOp::QuickGelu, UnaryOp::Relu, UnaryOp::Tanh}) {
    std::vector<double> ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      double v = x[i];
      switch (op) {
        case UnaryOp::Silu: ref[i] = v / (1.0 + std::exp(-v)); break;
        case UnaryOp::GeluErf: ref[i] = gelu(v); break;
        case UnaryOp::GeluTanh:
          ref[i] = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
          break;
        case UnaryOp::QuickGelu: ref[i] = v / (1.0 + std::exp(-1.702 * v)); break;
        case UnaryOp::Relu: ref[i] = v > 0 ? v : 0; break;
        case UnaryOp::Tanh: ref[i] = std::tanh(v); break;
      }
    }
    for_devices(Op::Unary, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      check(fetch(be, be.unary(op, be.upload(host_tensor({3, 37}, x)))), ref, 1e-5, 1e-6, "unary");
    });
  }
  const int64_t N = 19;
  auto g = random_vector(2 * 5 * 2 * N, 72, -4.f, 4.f);
  std::vector<double> ref(2 * 5 * N);
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t i = 0; i < N; ++i) ref[(size_t)(r * N + i)] = (double)g[(size_t)(r * 2 * N + i)] * gelu(g[(size_t)(r * 2 * N + N + i)]);
  for_devices(Op::Geglu, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    Tensor y = be.geglu(be.upload(host_tensor({2, 5, 2 * N}, g)));
    expect_shape(y, {2, 5, N});
    check(fetch(be, y), ref, 1e-5, 1e-6, "geglu");
  });
}

TEST(backend_ops, elementwise_broadcast) {
  const std::vector<int64_t> as = {2, 3, 5, 7};
  auto a = random_vector(2 * 3 * 5 * 7, 81);
  for (const std::vector<int64_t>& bs : std::vector<std::vector<int64_t>>{{2, 3, 5, 7}, {3, 1, 1}, {1, 3, 5, 7}, {7}, {2, 3, 1, 1}, {5, 7}}) {
    int64_t bn = 1;
    for (int64_t s : bs) bn *= s;
    auto b = random_vector((size_t)bn, 82);
    std::vector<double> radd(a.size()), rmul(a.size());
    for (int64_t i0 = 0; i0 < 2; ++i0)
      for (int64_t i1 = 0; i1 < 3; ++i1)
        for (int64_t i2 = 0; i2 < 5; ++i2)
          for (int64_t i3 = 0; i3 < 7; ++i3) {
            int64_t idx[4] = {i0, i1, i2, i3};
            int64_t bi = 0;
            const int off = 4 - (int)bs.size();
            for (size_t j = 0; j < bs.size(); ++j) bi = bi * bs[j] + (bs[j] == 1 ? 0 : idx[off + (int)j]);
            size_t ai = (size_t)(((i0 * 3 + i1) * 5 + i2) * 7 + i3);
            radd[ai] = (double)a[ai] + b[(size_t)bi];
            rmul[ai] = (double)a[ai] * b[(size_t)bi];
          }
    for_devices(Op::Add, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor ta = be.upload(host_tensor(as, a)), tb = be.upload(host_tensor(bs, b));
      check(fetch(be, be.add(ta, tb)), radd, 1e-6, 1e-7, "add");
    });
    for_devices(Op::Mul, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor ta = be.upload(host_tensor(as, a)), tb = be.upload(host_tensor(bs, b));
      check(fetch(be, be.mul(ta, tb)), rmul, 1e-6, 1e-7, "mul");
    });
    for_devices(Op::AddInplace, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor ta = be.upload(host_tensor(as, a));  // a fresh copy: host_tensor() allocates anew each call
      be.add_(ta, be.upload(host_tensor(bs, b)));
      check(fetch(be, ta), radd, 1e-6, 1e-7, "add_");
    });
  }
  auto c = random_vector(a.size(), 83);
  std::vector<double> rs(a.size()), rc(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    rs[i] = (double)a[i] * -1.7;
    rc[i] = 0.3 * a[i] + -2.5 * (double)c[i];
  }
  for_devices(Op::Scale, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    check(fetch(be, be.scale(be.upload(host_tensor(as, a)), -1.7f)), rs, 1e-6, 1e-7, "scale");
  });
  for_devices(Op::Combine, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    check(fetch(be, be.combine(be.upload(host_tensor(as, a)), 0.3f, be.upload(host_tensor(as, c)), -2.5f)), rc, 1e-6,
          1e-6, "combine");
  });
}

TEST(backend_ops, layout) {
  // concat along 0, 1 and 2
  auto a = random_vector(2 * 3 * 5, 91), b = random_vector(2 * 4 * 5, 92), c = random_vector(1 * 3 * 5, 93);
  std::vector<double> r1, r0, r2;
  for (int64_t n = 0; n < 2; ++n) {
    r1.insert(r1.end(), a.begin() + n * 15, a.begin() + (n + 1) * 15);
    r1.insert(r1.end(), b.begin() + n * 20, b.begin() + (n + 1) * 20);
  }
  r0.insert(r0.end(), a.begin(), a.end());
  r0.insert(r0.end(), c.begin(), c.end());
  for (int64_t r = 0; r < 6; ++r) {
    r2.insert(r2.end(), a.begin() + r * 5, a.begin() + (r + 1) * 5);
    r2.insert(r2.end(), a.begin() + r * 5, a.begin() + (r + 1) * 5);
  }
  for_devices(Op::Concat, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    Tensor ta = be.upload(host_tensor({2, 3, 5}, a));
    Tensor y1 = be.concat(ta, be.upload(host_tensor({2, 4, 5}, b)), 1);
    expect_shape(y1, {2, 7, 5});
    check(fetch(be, y1), r1, 0, 0, "concat dim 1");
    Tensor y0 = be.concat(ta, be.upload(host_tensor({1, 3, 5}, c)), 0);
    expect_shape(y0, {3, 3, 5});
    check(fetch(be, y0), r0, 0, 0, "concat dim 0");
    Tensor y2 = be.concat(ta, ta, 2);
    expect_shape(y2, {2, 3, 10});
    check(fetch(be, y2), r2, 0, 0, "concat dim 2");
  });
  // upsample, transposes, pad on [2, 3, 5, 7]
  const int64_t B = 2, C = 3, H = 5, W = 7;
  auto x = random_vector((size_t)(B * C * H * W), 94);
  auto at = [&](int64_t n, int64_t ch, int64_t y, int64_t xx) { return (double)x[(size_t)(((n * C + ch) * H + y) * W + xx)]; };
  std::vector<double> up, nlc, padded;
  for (int64_t n = 0; n < B; ++n)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t y = 0; y < 2 * H; ++y)
        for (int64_t xx = 0; xx < 2 * W; ++xx) up.push_back(at(n, ch, y / 2, xx / 2));
  for (int64_t n = 0; n < B; ++n)
    for (int64_t l = 0; l < H * W; ++l)
      for (int64_t ch = 0; ch < C; ++ch) nlc.push_back(at(n, ch, l / W, l % W));
  const int L = 1, R = 2, T = 3, Bo = 0;
  for (int64_t n = 0; n < B; ++n)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t y = 0; y < H + T + Bo; ++y)
        for (int64_t xx = 0; xx < W + L + R; ++xx) {
          int64_t sy = y - T, sx = xx - L;
          padded.push_back(sy >= 0 && sy < H && sx >= 0 && sx < W ? at(n, ch, sy, sx) : 0.0);
        }
  for_devices(Op::Upsample2x, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    Tensor y = be.upsample_nearest2x(be.upload(host_tensor({B, C, H, W}, x)));
    expect_shape(y, {B, C, 2 * H, 2 * W});
    check(fetch(be, y), up, 0, 0, "upsample_nearest2x");
  });
  for_devices(Op::NchwToNlc, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    Tensor y = be.nchw_to_nlc(be.upload(host_tensor({B, C, H, W}, x)));
    expect_shape(y, {B, H * W, C});
    check(fetch(be, y), nlc, 0, 0, "nchw_to_nlc");
  });
  for_devices(Op::NlcToNchw, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    std::vector<float> nf(nlc.begin(), nlc.end());
    Tensor y = be.nlc_to_nchw(be.upload(host_tensor({B, H * W, C}, nf)), H, W);
    expect_shape(y, {B, C, H, W});
    check(fetch(be, y), to_d(x), 0, 0, "nlc_to_nchw");
  });
  for_devices(Op::Pad, DType::F32, [&](const Dev& d) {
    Backend& be = *d.be;
    Tensor y = be.pad(be.upload(host_tensor({B, C, H, W}, x)), L, R, T, Bo);
    expect_shape(y, {B, C, H + T + Bo, W + L + R});
    check(fetch(be, y), padded, 0, 0, "pad");
  });
}

TEST(backend_ops, timestep_embedding) {
  for (int dim : {320, 33, 1280}) {
    std::vector<float> t = {1.f, 500.5f, 999.f};
    std::vector<double> ref;
    const int half = dim / 2;
    for (float tv : t) {
      std::vector<double> row((size_t)dim, 0.0);
      for (int j = 0; j < half; ++j) {
        double f = std::exp(-std::log(10000.0) * j / half);
        row[(size_t)j] = std::cos(tv * f);
        row[(size_t)(half + j)] = std::sin(tv * f);
      }
      ref.insert(ref.end(), row.begin(), row.end());
    }
    for_devices(Op::TimestepEmbedding, DType::F32, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor y = be.timestep_embedding(t, dim, 10000.f);
      expect_shape(y, {3, dim});
      // float32 argument t*f: error up to |t f| * 2^-23 ~ 1.2e-4 at t = 999
      check(fetch(be, y), ref, 0, 3e-4, "timestep_embedding");
    });
  }
}

TEST(backend_ops, get_rows_every_weight_type) {
  for (DType wt : sdntest::kernel_weight_types()) {
    const int bs = dtype_traits(wt).block_size;
    const int64_t V = 11, D = bs == 256 ? 256 : bs > 1 ? 64 : 33;
    std::vector<float> deq;
    Tensor table = sdntest::make_weight(wt, {V, D}, V, D, 101, &deq);
    std::vector<int32_t> ids = {3, 0, 10, 3, 7};
    std::vector<double> ref;
    for (int32_t id : ids) ref.insert(ref.end(), deq.begin() + id * D, deq.begin() + (id + 1) * D);
    for_devices(Op::GetRows, wt, [&](const Dev& d) {
      Backend& be = *d.be;
      Tensor pt = be.prepare_weight(table);
      Tensor y = be.get_rows(pt, ids);
      expect_shape(y, {(int64_t)ids.size(), D});
      check(fetch(be, y), ref, 0, 0, "get_rows");
      EXPECT_THROWS_CODE(be.get_rows(pt, {0, (int32_t)V}), ErrorCode::InvalidArgument);
    });
  }
}

TEST(backend_ops, cpu_fallback_wrapper_runs_and_counts) {
  // A device that supports nothing: every op must still give the CPU's result through the fallback wrapper, and
  // each kind of op is counted.
  class NothingBackend final : public Backend {
   public:
    explicit NothingBackend(std::shared_ptr<Backend> cpu) : c_(std::move(cpu)) {}
    const char* name() const override { return "nothing"; }
    DeviceInfo device_info() const override { return c_->device_info(); }
    bool is_host() const override { return true; }
    bool supports(Op, DType) const override { return false; }
    Tensor empty(const std::vector<int64_t>& s, DType t) override { return c_->empty(s, t); }
    Tensor upload(const Tensor& h) override { return c_->upload(h); }
    Tensor to_host(const Tensor& x) override { return x; }
    void write(Tensor& d, const Tensor& s) override { c_->write(d, s); }
    void trim() override {}
    MemoryStats memory_stats() const override { return {}; }
    Tensor prepare_weight(const Tensor& w) override { throw_error(ErrorCode::Unsupported, "no weights here"); }
#define NOPE(...) { throw_error(ErrorCode::Internal, "unsupported op reached the device"); }
    Tensor linear(const Tensor&, const Tensor&, const Tensor*) override NOPE()
    Tensor conv2d(const Tensor&, const Tensor&, const Tensor*, int, int) override NOPE()
    Tensor group_norm(const Tensor&, int, float, const Tensor*, const Tensor*, bool) override NOPE()
    Tensor layer_norm(const Tensor&, float, const Tensor*, const Tensor*) override NOPE()
    Tensor softmax(const Tensor&) override NOPE()
    Tensor attention(const Tensor&, const Tensor&, const Tensor&, int, bool) override NOPE()
    Tensor unary(UnaryOp, const Tensor&) override NOPE()
    Tensor geglu(const Tensor&) override NOPE()
    Tensor add(const Tensor&, const Tensor&) override NOPE()
    Tensor mul(const Tensor&, const Tensor&) override NOPE()
    void add_(Tensor&, const Tensor&) override NOPE()
    Tensor scale(const Tensor&, float) override NOPE()
    Tensor combine(const Tensor&, float, const Tensor&, float) override NOPE()
    Tensor concat(const Tensor&, const Tensor&, int) override NOPE()
    Tensor upsample_nearest2x(const Tensor&) override NOPE()
    Tensor nchw_to_nlc(const Tensor&) override NOPE()
    Tensor nlc_to_nchw(const Tensor&, int64_t, int64_t) override NOPE()
    Tensor pad(const Tensor&, int, int, int, int) override NOPE()
    Tensor timestep_embedding(const std::vector<float>&, int, float) override NOPE()
    Tensor get_rows(const Tensor&, const std::vector<int32_t>&) override NOPE()
#undef NOPE
   private:
    std::shared_ptr<Backend> c_;
  };
  auto cpu = make_cpu_backend();
  auto fb = with_cpu_fallback(std::make_shared<NothingBackend>(cpu), cpu);
  std::vector<float> wdeq;
  Tensor w = sdntest::make_weight(DType::Q8_0, {5, 64}, 5, 64, 7, &wdeq);
  auto x = random_vector(3 * 64, 8);
  Tensor pw = fb->prepare_weight(w);
  Tensor y = fb->linear(fb->upload(host_tensor({3, 64}, x)), pw, nullptr);
  Tensor yc = cpu->linear(host_tensor({3, 64}, x), cpu->prepare_weight(w), nullptr);
  check(fetch(*fb, y), to_d(fetch(*cpu, yc)), 0, 0, "fallback linear");
  Tensor s = fb->scale(y, 2.f);
  Tensor a = fb->add(s, y);
  fb->add_(a, y);
  check(fetch(*fb, a), to_d(fetch(*cpu, cpu->scale(yc, 4.f))), 1e-6, 1e-6, "fallback elementwise");
  auto counts = fb->fallback_counts();
  EXPECT_EQ(counts.size(), (size_t)4);  // linear, scale, add, add_
}
