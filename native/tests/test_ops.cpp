// CPU backend operations (everything but linear/conv2d): each against a straightforward double-precision
// reference on random inputs of odd sizes, under every SIMD level the machine has, and with 1 and 2 threads.
//
// Tolerances (|got - ref| <= atol + rtol |ref|):
//   add/mul/add_/scale/concat/layout ops   exact (same float operations as the reference, or copies)
//   group_norm, layer_norm                 atol 2e-5, rtol 2e-5 (fused SiLU the same)
//   softmax                                atol 1e-7, rtol 2e-6
//   unary (SiLU, GELU erf/tanh, quick-GELU), geglu  atol 1e-7, rtol 2e-6 (vector erfc: fractional error ~2e-7)
//   attention                              atol 2e-6, rtol 1e-4
//   timestep_embedding                     atol 1e-4 (float32 argument t*f as in the reference, |t| <= 1000)
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "core/cpu.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "sdn/error.h"
#include "test.h"

using namespace sdn;

namespace {

Backend& B() { return cpu_backend(); }

Tensor rnd(const std::vector<int64_t>& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return Tensor::from_vector(shape, sdntest::random_vector((size_t)n, seed, lo, hi));
}

// Runs fn once per SIMD level this CPU supports, restoring the level afterwards.
void each_level(const std::function<void(SimdLevel)>& fn) {
  SimdLevel saved = simd_level();
  struct Restore {
    SimdLevel l;
    ~Restore() { simd_set_level(l); }
  } restore{saved};
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON}) {
    if (!simd_supported(l)) continue;
    simd_set_level(l);
    fn(l);
  }
}

// Runs fn with 1 and then 2 threads and checks the two results are bit-identical.
void same_with_threads(const std::function<Tensor()>& fn) {
  int saved = default_threads();
  struct Restore {
    int n;
    ~Restore() { set_default_threads(n); }
  } restore{saved};
  set_default_threads(1);
  Tensor a = fn();
  set_default_threads(2);
  Tensor b = fn();
  EXPECT_EQ(a.numel(), b.numel());
  EXPECT_TRUE(std::memcmp(a.data, b.data, (size_t)a.numel() * sizeof(float)) == 0);
}

#define CHECK_CLOSE_LEVEL(level, got, ref, n, atol, rtol)                                                    \
  do {                                                                                                       \
    std::string why_;                                                                                        \
    if (!::sdntest::all_close((got), (ref), (n), (atol), (rtol), &why_)) SDN_FAIL(simd_name(level) << ": " << why_); \
  } while (0)

// ---- double references ----
std::vector<double> ref_group_norm(const Tensor& x, int G, double eps, const Tensor* g, const Tensor* b, bool silu) {
  int64_t N = x.shape[0], C = x.shape[1], S = x.numel() / (N * C), cpg = C / G;
  std::vector<double> y((size_t)x.numel());
  const float* xp = x.f32();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t gi = 0; gi < G; ++gi) {
      const float* xg = xp + (n * C + gi * cpg) * S;
      double m = 0, v = 0;
      for (int64_t i = 0; i < cpg * S; ++i) m += xg[i];
      m /= (double)(cpg * S);
      for (int64_t i = 0; i < cpg * S; ++i) v += (xg[i] - m) * (xg[i] - m);
      v /= (double)(cpg * S);
      for (int64_t cc = 0; cc < cpg; ++cc) {
        int64_t c = gi * cpg + cc;
        for (int64_t s = 0; s < S; ++s) {
          double t = (xg[cc * S + s] - m) / std::sqrt(v + eps);
          if (g) t *= g->f32()[c];
          if (b) t += b->f32()[c];
          if (silu) t = t / (1 + std::exp(-t));
          y[(size_t)((n * C + c) * S + s)] = t;
        }
      }
    }
  return y;
}

double ref_gelu_erf(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }
double ref_unary(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Silu: return x / (1 + std::exp(-x));
    case UnaryOp::GeluErf: return ref_gelu_erf(x);
    case UnaryOp::GeluTanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    default: return x / (1 + std::exp(-1.702 * x));
  }
}

std::vector<double> ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, int H, bool causal,
                                  int64_t row_begin = 0, int64_t row_end = -1) {
  int64_t Bn = q.shape[0], Tq = q.shape[1], HD = q.shape[2], Tk = k.shape[1], D = HD / H;
  std::vector<double> o((size_t)q.numel(), 0.0);
  double sc = 1.0 / std::sqrt((double)D);
  std::vector<double> s((size_t)Tk);
  int64_t rows = row_end < 0 ? Tq : row_end;
  for (int64_t b = 0; b < Bn; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = row_begin; i < rows; ++i) {
        const float* qi = q.f32() + (b * Tq + i) * HD + h * D;
        double mx = -1e300;
        for (int64_t j = 0; j < Tk; ++j) {
          if (causal && j > i) {
            s[(size_t)j] = -1e300;
            continue;
          }
          const float* kj = k.f32() + (b * Tk + j) * HD + h * D;
          double d = 0;
          for (int64_t c = 0; c < D; ++c) d += (double)qi[c] * kj[c];
          s[(size_t)j] = d * sc;
          mx = std::max(mx, s[(size_t)j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < Tk; ++j) {
          s[(size_t)j] = (causal && j > i) ? 0.0 : std::exp(s[(size_t)j] - mx);
          sum += s[(size_t)j];
        }
        double* oi = o.data() + (b * Tq + i) * HD + h * D;
        for (int64_t j = 0; j < Tk; ++j) {
          const float* vj = v.f32() + (b * Tk + j) * HD + h * D;
          for (int64_t c = 0; c < D; ++c) oi[c] += s[(size_t)j] / sum * vj[c];
        }
      }
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------

TEST(ops, group_norm_matches_double) {
  struct Case {
    std::vector<int64_t> shape;
    int groups;
  };
  std::vector<Case> cases = {{{2, 3, 5, 7}, 1}, {{2, 3, 5, 7}, 3}, {{1, 64, 3, 5}, 32}, {{2, 6, 11}, 2},
                             {{1, 32, 1, 1}, 32}, {{2, 96, 9, 13}, 32}, {{1, 1, 1, 1}, 1}};
  uint32_t seed = 1;
  for (auto& c : cases) {
    Tensor x = rnd(c.shape, seed++, -2.f, 3.f);
    Tensor g = rnd({c.shape[1]}, seed++, 0.5f, 1.5f), b = rnd({c.shape[1]}, seed++);
    for (int variant = 0; variant < 4; ++variant) {
      bool affine = variant & 1, silu = variant & 2;
      float eps = silu ? 1e-6f : 1e-5f;
      auto ref = ref_group_norm(x, c.groups, eps, affine ? &g : nullptr, affine ? &b : nullptr, silu);
      each_level([&](SimdLevel l) {
        Tensor y = B().group_norm(x, c.groups, eps, affine ? &g : nullptr, affine ? &b : nullptr, silu);
        EXPECT_TRUE(y.sizes() == x.sizes());
        CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), (size_t)y.numel(), 2e-5, 2e-5);
      });
    }
  }
}

TEST(ops, group_norm_large_offset_is_accurate) {
  // 256x256 spatial, values with a large mean and a small spread: naive float sum/sum-of-squares would fail.
  Tensor x = rnd({1, 32, 256, 256}, 77, 99.f, 101.f);
  Tensor g = rnd({32}, 78, 0.5f, 1.5f), b = rnd({32}, 79);
  auto ref = ref_group_norm(x, 32, 1e-6, &g, &b, false);
  each_level([&](SimdLevel l) {
    Tensor y = B().group_norm(x, 32, 1e-6f, &g, &b, false);
    // values near 100 carry float rounding of ~4e-6 before normalisation by a std of ~0.58
    CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), (size_t)y.numel(), 3e-5, 3e-5);
  });
  same_with_threads([&] { return B().group_norm(x, 32, 1e-6f, &g, &b, true); });
}

TEST(ops, layer_norm_matches_double) {
  std::vector<std::vector<int64_t>> shapes = {{2, 3, 5}, {2, 7, 33}, {1, 1, 1}, {3, 768}, {2, 5, 320}, {17}};
  uint32_t seed = 100;
  for (auto& sh : shapes) {
    int64_t C = sh.back();
    Tensor x = rnd(sh, seed++, -3.f, 2.f), g = rnd({C}, seed++, 0.5f, 1.5f), b = rnd({C}, seed++);
    for (int affine = 0; affine < 2; ++affine) {
      int64_t rows = x.numel() / C;
      std::vector<double> ref((size_t)x.numel());
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x.f32() + r * C;
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; ++i) m += xr[i];
        m /= C;
        for (int64_t i = 0; i < C; ++i) v += (xr[i] - m) * (xr[i] - m);
        v /= C;
        for (int64_t i = 0; i < C; ++i) {
          double t = (xr[i] - m) / std::sqrt(v + 1e-5);
          if (affine) t = t * g.f32()[i] + b.f32()[i];
          ref[(size_t)(r * C + i)] = t;
        }
      }
      each_level([&](SimdLevel l) {
        Tensor y = B().layer_norm(x, 1e-5f, affine ? &g : nullptr, affine ? &b : nullptr);
        CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), ref.size(), 2e-5, 2e-5);
      });
    }
  }
  Tensor x = rnd({4, 37, 96}, 5);
  same_with_threads([&] { return B().layer_norm(x, 1e-5f, nullptr, nullptr); });
}

TEST(ops, softmax_matches_double) {
  std::vector<std::vector<int64_t>> shapes = {{3, 5}, {2, 4, 77}, {1, 1}, {2, 3, 16}, {5, 1000}};
  uint32_t seed = 200;
  for (auto& sh : shapes) {
    for (float offset : {0.f, 80.f, -300.f}) {
      Tensor x = rnd(sh, seed++, -10.f + offset, 10.f + offset);
      int64_t C = sh.back(), rows = x.numel() / C;
      std::vector<double> ref((size_t)x.numel());
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x.f32() + r * C;
        double m = -1e300, s = 0;
        for (int64_t i = 0; i < C; ++i) m = std::max(m, (double)xr[i]);
        for (int64_t i = 0; i < C; ++i) s += std::exp(xr[i] - m);
        for (int64_t i = 0; i < C; ++i) ref[(size_t)(r * C + i)] = std::exp(xr[i] - m) / s;
      }
      each_level([&](SimdLevel l) {
        Tensor y = B().softmax(x);
        CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), ref.size(), 1e-7, 2e-6);
      });
    }
  }
}

TEST(ops, softmax_same_with_threads) {
  Tensor x = rnd({3, 1000, 77}, 250, -20.f, 20.f);
  same_with_threads([&] { return B().softmax(x); });
}

TEST(ops, unary_matches_double) {
  Tensor x = rnd({3, 5, 67}, 300, -9.f, 9.f);
  Tensor small = rnd({1, 1}, 301);
  for (UnaryOp op : {UnaryOp::Silu, UnaryOp::GeluErf, UnaryOp::GeluTanh, UnaryOp::QuickGelu}) {
    for (const Tensor* t : {&x, &small}) {
      std::vector<double> ref((size_t)t->numel());
      for (size_t i = 0; i < ref.size(); ++i) ref[i] = ref_unary(op, t->f32()[i]);
      each_level([&](SimdLevel l) {
        Tensor y = B().unary(op, *t);
        CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), ref.size(), 1e-7, 2e-6);
      });
    }
  }
  // dense sweep of the GELU core range for the erf approximation
  std::vector<float> sweep;
  for (int i = -60000; i <= 60000; ++i) sweep.push_back((float)i * 1e-4f);
  Tensor s = Tensor::from_vector({(int64_t)sweep.size()}, sweep);
  std::vector<double> ref(sweep.size());
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = ref_gelu_erf(sweep[i]);
  each_level([&](SimdLevel l) {
    Tensor y = B().unary(UnaryOp::GeluErf, s);
    CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), ref.size(), 1e-7, 2e-6);
  });
  Tensor big = rnd({5, 40000}, 302, -6.f, 6.f);
  same_with_threads([&] { return B().unary(UnaryOp::GeluErf, big); });
}

TEST(ops, geglu_matches_double) {
  for (int64_t N : {1, 37, 64}) {
    Tensor x = rnd({2, 3, 2 * N}, 400 + (uint32_t)N, -5.f, 5.f);
    std::vector<double> ref((size_t)(6 * N));
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t i = 0; i < N; ++i)
        ref[(size_t)(r * N + i)] = (double)x.f32()[r * 2 * N + i] * ref_gelu_erf(x.f32()[r * 2 * N + N + i]);
    each_level([&](SimdLevel l) {
      Tensor y = B().geglu(x);
      EXPECT_TRUE((y.sizes() == std::vector<int64_t>{2, 3, N}));
      CHECK_CLOSE_LEVEL(l, y.f32(), ref.data(), ref.size(), 1e-7, 2e-6);
    });
  }
  Tensor big = rnd({3, 700, 2 * 77}, 410, -4.f, 4.f);
  same_with_threads([&] { return B().geglu(big); });
  EXPECT_THROWS_CODE(B().geglu(rnd({2, 5}, 1)), ErrorCode::InvalidArgument);
}

TEST(ops, add_mul_broadcast) {
  std::vector<int64_t> as = {2, 3, 5, 7};
  std::vector<std::vector<int64_t>> bshapes = {{2, 3, 5, 7}, {1, 3, 1, 1}, {7},       {2, 3, 1, 1}, {1},
                                               {3, 1, 7},    {2, 1, 5, 1}, {5, 7},   {1, 1, 1, 7}, {2, 1, 1, 7}};
  Tensor a = rnd(as, 500);
  uint32_t seed = 501;
  for (auto& bsh : bshapes) {
    Tensor b = rnd(bsh, seed++);
    // reference by explicit index arithmetic
    std::vector<float> radd((size_t)a.numel()), rmul((size_t)a.numel());
    int64_t bfull[4] = {1, 1, 1, 1};
    for (size_t i = 0; i < bsh.size(); ++i) bfull[4 - bsh.size() + i] = bsh[i];
    for (int64_t i0 = 0; i0 < 2; ++i0)
      for (int64_t i1 = 0; i1 < 3; ++i1)
        for (int64_t i2 = 0; i2 < 5; ++i2)
          for (int64_t i3 = 0; i3 < 7; ++i3) {
            int64_t ai = ((i0 * 3 + i1) * 5 + i2) * 7 + i3;
            int64_t j0 = bfull[0] == 1 ? 0 : i0, j1 = bfull[1] == 1 ? 0 : i1, j2 = bfull[2] == 1 ? 0 : i2,
                    j3 = bfull[3] == 1 ? 0 : i3;
            int64_t bi = ((j0 * bfull[1] + j1) * bfull[2] + j2) * bfull[3] + j3;
            radd[(size_t)ai] = a.f32()[ai] + b.f32()[bi];
            rmul[(size_t)ai] = a.f32()[ai] * b.f32()[bi];
          }
    each_level([&](SimdLevel l) {
      Tensor y = B().add(a, b);
      CHECK_CLOSE_LEVEL(l, y.f32(), radd.data(), radd.size(), 1e-30, 0.0);
      y = B().mul(a, b);
      CHECK_CLOSE_LEVEL(l, y.f32(), rmul.data(), rmul.size(), 1e-30, 0.0);
      Tensor c = a.contiguous();
      if (c.data == a.data) c = B().scale(a, 1.f);  // own copy
      B().add_(c, b);
      CHECK_CLOSE_LEVEL(l, c.f32(), radd.data(), radd.size(), 1e-30, 0.0);
    });
  }
  // [C] over [B, T, C] and the per-channel case at sizes that cross thread chunks
  Tensor big = rnd({2, 320, 40, 41}, 600), ch = rnd({1, 320, 1, 1}, 601);
  same_with_threads([&] { return B().add(big, ch); });
  Tensor tok = rnd({2, 1000, 77}, 602), vec = rnd({77}, 603);
  same_with_threads([&] { return B().mul(tok, vec); });
  EXPECT_THROWS_CODE(B().add(rnd({2, 3}, 1), rnd({4}, 2)), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().mul(rnd({2, 3}, 1), rnd({2, 2, 3}, 2)), ErrorCode::InvalidArgument);
}

TEST(ops, scale_exact) {
  Tensor x = rnd({3, 5, 17}, 700);
  each_level([&](SimdLevel l) {
    Tensor y = B().scale(x, 0.18215f);
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y.f32()[i], x.f32()[i] * 0.18215f);
  });
}

TEST(ops, concat_dims) {
  Tensor a = rnd({2, 3, 4, 5}, 800), b = rnd({2, 2, 4, 5}, 801);
  Tensor y = B().concat(a, b, 1);
  EXPECT_TRUE((y.sizes() == std::vector<int64_t>{2, 5, 4, 5}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t s = 0; s < 20; ++s) {
        float want = c < 3 ? a.f32()[(n * 3 + c) * 20 + s] : b.f32()[(n * 2 + c - 3) * 20 + s];
        EXPECT_EQ(y.f32()[(n * 5 + c) * 20 + s], want);
      }
  Tensor t1 = rnd({2, 5, 7}, 802), t2 = rnd({2, 3, 7}, 803);
  Tensor yt = B().concat(t1, t2, 1);
  EXPECT_TRUE((yt.sizes() == std::vector<int64_t>{2, 8, 7}));
  EXPECT_EQ(yt.f32()[(1 * 8 + 6) * 7 + 2], t2.f32()[(1 * 3 + 1) * 7 + 2]);
  Tensor l1 = rnd({2, 5, 3}, 804), l2 = rnd({2, 5, 4}, 805);
  Tensor yl = B().concat(l1, l2, -1);
  EXPECT_TRUE((yl.sizes() == std::vector<int64_t>{2, 5, 7}));
  EXPECT_EQ(yl.f32()[(1 * 5 + 2) * 7 + 4], l2.f32()[(1 * 5 + 2) * 4 + 1]);
  Tensor y0 = B().concat(t1, t1, 0);
  EXPECT_TRUE((y0.sizes() == std::vector<int64_t>{4, 5, 7}));
  EXPECT_EQ(y0.f32()[2 * 35 + 3], t1.f32()[3]);
  EXPECT_THROWS_CODE(B().concat(a, t1, 1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().concat(a, rnd({2, 3, 4, 6}, 1), 1), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().concat(a, b, 4), ErrorCode::InvalidArgument);
}

TEST(ops, upsample_nearest2x) {
  for (auto sh : std::vector<std::vector<int64_t>>{{2, 3, 5, 7}, {1, 1, 1, 1}, {1, 4, 16, 33}}) {
    Tensor x = rnd(sh, 900);
    Tensor y = B().upsample_nearest2x(x);
    int64_t P = sh[0] * sh[1], H = sh[2], W = sh[3];
    EXPECT_TRUE((y.sizes() == std::vector<int64_t>{sh[0], sh[1], 2 * H, 2 * W}));
    for (int64_t p = 0; p < P; ++p)
      for (int64_t i = 0; i < 2 * H; ++i)
        for (int64_t j = 0; j < 2 * W; ++j)
          EXPECT_EQ(y.f32()[(p * 2 * H + i) * 2 * W + j], x.f32()[(p * H + i / 2) * W + j / 2]);
  }
  EXPECT_THROWS_CODE(B().upsample_nearest2x(rnd({2, 3}, 1)), ErrorCode::InvalidArgument);
}

TEST(ops, nchw_nlc_roundtrip) {
  for (auto sh : std::vector<std::vector<int64_t>>{{2, 3, 5, 7}, {1, 40, 33, 35}, {1, 1, 1, 1}, {2, 67, 9, 15}}) {
    Tensor x = rnd(sh, 1000);
    int64_t N = sh[0], C = sh[1], L = sh[2] * sh[3];
    each_level([&](SimdLevel l) {
      Tensor t = B().nchw_to_nlc(x);
      EXPECT_TRUE((t.sizes() == std::vector<int64_t>{N, L, C}));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < L; ++i)
            if (t.f32()[(n * L + i) * C + c] != x.f32()[(n * C + c) * L + i])
              SDN_FAIL(simd_name(l) << ": nchw_to_nlc wrong at n" << n << " c" << c << " l" << i);
      Tensor back = B().nlc_to_nchw(t, sh[2], sh[3]);
      EXPECT_TRUE(back.sizes() == x.sizes());
      EXPECT_TRUE(std::memcmp(back.data, x.data, (size_t)x.numel() * 4) == 0);
    });
  }
  Tensor big = rnd({2, 320, 24, 40}, 1001);
  same_with_threads([&] { return B().nchw_to_nlc(big); });
  EXPECT_THROWS_CODE(B().nlc_to_nchw(rnd({1, 10, 3}, 1), 3, 4), ErrorCode::InvalidArgument);
}

TEST(ops, timestep_embedding_cos_then_sin) {
  std::vector<float> ts = {0.f, 1.f, 999.f, 500.5f};
  for (int dim : {320, 7, 1}) {
    Tensor y = B().timestep_embedding(ts, dim, 10000.f);
    EXPECT_TRUE((y.sizes() == std::vector<int64_t>{4, dim}));
    int half = dim / 2;
    for (size_t b = 0; b < ts.size(); ++b) {
      for (int j = 0; j < half; ++j) {
        double f = std::exp(-std::log(10000.0) * j / half);
        EXPECT_NEAR(y.f32()[b * dim + j], std::cos(ts[b] * f), 1e-4);
        EXPECT_NEAR(y.f32()[b * dim + half + j], std::sin(ts[b] * f), 1e-4);
      }
      if (dim % 2) EXPECT_EQ(y.f32()[b * dim + dim - 1], 0.f);
    }
  }
  EXPECT_THROWS_CODE(B().timestep_embedding(ts, 0, 10000.f), ErrorCode::InvalidArgument);
}

TEST(ops, attention_matches_double) {
  struct Case {
    int64_t b, tq, tk;
    int h, d;
    bool causal;
  };
  std::vector<Case> cases = {{2, 5, 3, 2, 7, false},   {1, 33, 77, 8, 40, false}, {1, 77, 77, 12, 64, true},
                             {2, 17, 1, 1, 80, false}, {1, 9, 20, 1, 160, false}, {1, 7, 13, 1, 512, false},
                             {1, 70, 70, 3, 7, true},  {1, 10, 20, 2, 16, true},  {1, 130, 100, 2, 40, false},
                             {1, 1, 1, 1, 1, false},   {2, 65, 154, 2, 80, false}, {1, 20, 10, 1, 33, true},
                             {1, 300, 301, 2, 40, false}, {1, 200, 200, 1, 24, true}, {1, 100, 130, 1, 512, false}};
  uint32_t seed = 1100;
  for (auto& c : cases) {
    Tensor q = rnd({c.b, c.tq, c.h * c.d}, seed++, -2.f, 2.f);
    Tensor k = rnd({c.b, c.tk, c.h * c.d}, seed++, -2.f, 2.f);
    Tensor v = rnd({c.b, c.tk, c.h * c.d}, seed++);
    auto ref = ref_attention(q, k, v, c.h, c.causal);
    each_level([&](SimdLevel l) {
      Tensor o = B().attention(q, k, v, c.h, c.causal);
      EXPECT_TRUE(o.sizes() == q.sizes());
      std::string why;
      if (!sdntest::all_close(o.f32(), ref.data(), ref.size(), 2e-6, 1e-4, &why))
        SDN_FAIL(simd_name(l) << " b" << c.b << " tq" << c.tq << " tk" << c.tk << " h" << c.h << " d" << c.d
                               << (c.causal ? " causal" : "") << ": " << why);
    });
  }
  Tensor q = rnd({2, 300, 320}, 1200), k = rnd({2, 77, 320}, 1201), v = rnd({2, 77, 320}, 1202);
  same_with_threads([&] { return B().attention(q, k, v, 8, false); });
  same_with_threads([&] { return B().attention(q, q, q, 5, true); });
  EXPECT_THROWS_CODE(B().attention(q, k, v, 7, false), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().attention(q, rnd({2, 77, 160}, 1), v, 8, false), ErrorCode::InvalidArgument);
}

TEST(ops, attention_on_strided_views) {
  // q, k, v as column slices of one [B, T, 3*H*D] tensor (a fused projection): same result as contiguous copies.
  const int64_t Bn = 2, T = 37, H = 2, D = 24, HD = H * D;
  Tensor qkv = rnd({Bn, T, 3 * HD}, 1400, -2.f, 2.f);
  auto slice = [&](int part) {
    Tensor t = qkv;
    t.shape[2] = HD;
    t.data = qkv.f32() + part * HD;
    return t;  // strides stay those of qkv
  };
  Tensor q = slice(0), k = slice(1), v = slice(2);
  EXPECT_TRUE(!q.is_contiguous());
  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  auto ref = ref_attention(qc, kc, vc, (int)H, false);
  each_level([&](SimdLevel l) {
    Tensor o = B().attention(q, k, v, (int)H, false);
    CHECK_CLOSE_LEVEL(l, o.f32(), ref.data(), ref.size(), 2e-6, 1e-4);
  });
}

TEST(ops, attention_4096_scratch_stays_small) {
  // 4096 x 4096 scores would take 64 MiB; the fused kernel must stay within a few MiB beyond its output.
  const int64_t T = 4096, D = 8;
  Tensor q = rnd({1, T, D}, 1300, -2.f, 2.f), k = rnd({1, T, D}, 1301, -2.f, 2.f), v = rnd({1, T, D}, 1302);
  TensorPool& pool = default_tensor_pool();
  size_t before = pool.bytes_in_use();
  pool.reset_peak();
  Tensor o = B().attention(q, k, v, 1, false);
  size_t extra = pool.peak_bytes_in_use() - before;
  if (extra > (size_t)4 << 20) SDN_FAIL("attention used " << extra << " bytes of pool memory");
  auto ref = ref_attention(q, k, v, 1, false, 0, 64);  // first 64 rows
  EXPECT_CLOSE(o.f32(), ref.data(), (size_t)(64 * D), 2e-6, 1e-4);
  ref = ref_attention(q, k, v, 1, false, T - 100, T);  // and the last 100
  EXPECT_CLOSE(o.f32() + (T - 100) * D, ref.data() + (T - 100) * D, (size_t)(100 * D), 2e-6, 1e-4);
}

TEST(ops, bad_arguments_throw) {
  Tensor x = rnd({1, 6, 3, 3}, 1);
  EXPECT_THROWS_CODE(B().group_norm(x, 4, 1e-5f, nullptr, nullptr, false), ErrorCode::InvalidArgument);
  Tensor g = rnd({5}, 2);
  EXPECT_THROWS_CODE(B().group_norm(x, 3, 1e-5f, &g, nullptr, false), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().layer_norm(x, 1e-5f, &g, nullptr), ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().attention(rnd({1, 4, 8}, 1), rnd({1, 0, 8}, 1), rnd({1, 0, 8}, 1), 1, false),
                     ErrorCode::InvalidArgument);
  EXPECT_THROWS_CODE(B().nchw_to_nlc(rnd({5}, 1)), ErrorCode::InvalidArgument);
}
