// Vulkan backend tests: every operation on every usable Vulkan device (lavapipe included) against the CPU backend
// on the same inputs (the CPU kernels are themselves tested against double-precision references), odd shapes,
// every weight type. Without a usable Vulkan device (or without the backend compiled in) each test prints SKIP.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "backends/backend.h"
#include "core/quant.h"
#include "models/clip.h"
#include "models/controlnet.h"
#include "pipeline/pipeline.h"
#include "sdn/error.h"
#include "test.h"
#include "vk_devices.h"
#include "tiny_sd.h"

using namespace sdn;
using namespace sdntest;

namespace {

std::shared_ptr<Backend> make_vk(const DeviceInfo& d, const BackendOptions& o = {}) {
  return find_backend_factory("vulkan")->create(d.index, o);
}

Tensor host_tensor(const std::vector<int64_t>& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return Tensor::from_vector(shape, random_vector((size_t)n, seed, lo, hi));
}

// A weight [rows, cols] of type t, quantized from random values (cols a multiple of the block size).
Tensor weight(DType t, const std::vector<int64_t>& shape, uint32_t seed) {
  int64_t rows = shape[0], cols = 1;
  for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
  std::vector<float> v = random_vector((size_t)(rows * cols), seed, -0.5f, 0.5f);
  // rows of `cols` elements (a 4-D quantized conv weight has rows of C*KH*KW, not of its last dimension)
  size_t rb = dtype_row_bytes(t, cols);
  auto buf = std::shared_ptr<char>(new char[rows * rb + 64], std::default_delete<char[]>());
  for (int64_t r = 0; r < rows; ++r) quantize_row(t, v.data() + r * cols, buf.get() + r * rb, cols);
  return Tensor::wrap(buf.get(), shape, t, buf);
}

void expect_close(const Tensor& got_h, const Tensor& ref, double atol, double rtol, const std::string& what) {
  Tensor g = got_h.contiguous(), r = ref.contiguous();
  if (g.sizes() != r.sizes()) SDN_FAIL(what << ": shape " << g.shape_str() << " vs " << r.shape_str());
  std::string why;
  if (!all_close(g.f32(), r.f32(), (size_t)r.numel(), atol, rtol, &why)) SDN_FAIL(what << ": " << why);
}

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1,
                        DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

TEST(vulkan, devices_listed) {
  BackendFactory* f = find_backend_factory("vulkan");
  if (!f) {
    std::fprintf(stderr, "SKIP: vulkan.devices_listed: the Vulkan backend is not compiled in\n");
    return;
  }
  std::vector<DeviceInfo> devs = f->devices();
  if (devs.empty()) EXPECT_TRUE(!f->unavailable_reason().empty());
  for (const DeviceInfo& d : devs) {
    std::fprintf(stderr, "  %s: %s (%s, %s, driver %s, %.1f GiB, fp16 %d int8 %d coopmat %d)%s%s\n", d.id.c_str(),
                 d.name.c_str(), d.vendor.c_str(), d.type.c_str(), d.driver.c_str(),
                 (double)d.memory_bytes / (1ull << 30), d.fp16, d.int8, d.cooperative_matrix,
                 d.usable ? "" : " unusable: ", d.unusable_reason.c_str());
    EXPECT_EQ(d.backend, std::string("vulkan"));
    EXPECT_TRUE(!d.name.empty());
    EXPECT_TRUE(d.usable || !d.unusable_reason.empty());
    if (d.name.find("llvmpipe") != std::string::npos) EXPECT_EQ(d.type, std::string("software"));
  }
}

TEST(vulkan, memory_roundtrip_pool_and_stats) {
  for (const DeviceInfo& d : vk_devices("vulkan.memory_roundtrip_pool_and_stats")) {
    auto vk = make_vk(d);
    Tensor h = host_tensor({3, 5, 7}, 1);
    Tensor t = vk->upload(h);
    EXPECT_TRUE(t.on_device());
    expect_close(vk->to_host(t), h, 1e-30, 0, "roundtrip");
    // a slice keeps its offset
    expect_close(vk->to_host(t.slice0(1, 3)), h.slice0(1, 3), 1e-30, 0, "slice");
    Tensor h2 = host_tensor({3, 5, 7}, 2);
    vk->write(t, h2);
    expect_close(vk->to_host(t), h2, 1e-30, 0, "write");
    MemoryStats m = vk->memory_stats();
    EXPECT_TRUE(m.in_use > 0 && m.peak >= m.in_use);
    t = Tensor();
    EXPECT_TRUE(vk->memory_stats().cached > 0);
    vk->trim();
    EXPECT_EQ(vk->memory_stats().cached, (uint64_t)0);
    // more than one staging buffer's worth (32 MiB) in both directions
    Tensor big = host_tensor({9 * 1024 * 1024 + 3}, 3);
    expect_close(vk->to_host(vk->upload(big)), big, 1e-30, 0, "large roundtrip");
  }
}

TEST(vulkan, linear_every_weight_type) {
  for (const DeviceInfo& d : vk_devices("vulkan.linear_every_weight_type")) {
    auto vk = make_vk(d);
    Backend& cpu = cpu_backend();
    for (DType t : kTypes) {
      const int64_t K = dtype_traits(t).block_size >= 256 ? 512 : 96;
      for (int64_t M : {1, 67}) {
        const int64_t N = 37;
        Tensor x = host_tensor({M, K}, 10 + (uint32_t)M);
        Tensor w = weight(t, {N, K}, 20 + (uint32_t)t);
        Tensor b = host_tensor({N}, 30);
        Tensor ref = cpu.linear(x, cpu.prepare_weight(w), &b);
        Tensor wd = vk->prepare_weight(w), bd = vk->prepare_weight(b);
        EXPECT_TRUE(wd.on_device() && wd.dtype == t);
        Tensor got = vk->to_host(vk->linear(vk->upload(x), wd, &bd));
        expect_close(got, ref, 1e-4, 1e-4, std::string("linear ") + dtype_name(t) + " M=" + std::to_string(M));
      }
    }
  }
}

TEST(vulkan, conv2d_every_weight_type_and_geometry) {
  for (const DeviceInfo& d : vk_devices("vulkan.conv2d_every_weight_type_and_geometry")) {
    auto vk = make_vk(d);
    Backend& cpu = cpu_backend();
    struct G {
      int64_t C, k;
      int s, p;
    };
    for (DType t : kTypes) {
      const bool kq = dtype_traits(t).block_size >= 256;
      for (G g : {G{kq ? 256 : 32, 1, 1, 0}, G{kq ? 256 : 32, 3, 1, 1}, G{kq ? 256 : 32, 3, 2, 1},
                  G{kq ? 256 : 32, 3, 2, 0}}) {
        if (dtype_traits(t).block_size > 1 && (g.C * g.k * g.k) % dtype_traits(t).block_size) continue;
        const int64_t OC = 19;
        Tensor x = host_tensor({2, g.C, 9, 11}, 40);
        Tensor w = weight(t, {OC, g.C, g.k, g.k}, 50);
        Tensor b = host_tensor({OC}, 60);
        Tensor ref = cpu.conv2d(x, cpu.prepare_weight(w), &b, g.s, g.p);
        Tensor wd = vk->prepare_weight(w), bd = vk->prepare_weight(b);
        Tensor got = vk->to_host(vk->conv2d(vk->upload(x), wd, &bd, g.s, g.p));
        expect_close(got, ref, 2e-4, 2e-4,
                     std::string("conv2d ") + dtype_name(t) + " k" + std::to_string(g.k) + " s" +
                         std::to_string(g.s) + " p" + std::to_string(g.p));
      }
    }
  }
}

TEST(vulkan, norms_softmax_attention) {
  for (const DeviceInfo& d : vk_devices("vulkan.norms_softmax_attention")) {
    auto vk = make_vk(d);
    Backend& cpu = cpu_backend();
    Tensor x = host_tensor({2, 12, 7, 5}, 70, -2.f, 3.f);
    Tensor g = host_tensor({12}, 71), b = host_tensor({12}, 72);
    Tensor gd = vk->prepare_weight(g), bd = vk->prepare_weight(b);
    Tensor xd = vk->upload(x);
    for (bool silu : {false, true})
      expect_close(vk->to_host(vk->group_norm(xd, 4, 1e-5f, &gd, &bd, silu)),
                   cpu.group_norm(x, 4, 1e-5f, &g, &b, silu), 1e-5, 1e-4, "group_norm");
    expect_close(vk->to_host(vk->group_norm(xd, 3, 1e-6f, nullptr, nullptr, false)),
                 cpu.group_norm(x, 3, 1e-6f, nullptr, nullptr, false), 1e-5, 1e-4, "group_norm no affine");
    Tensor l = host_tensor({3, 13, 300}, 73);
    Tensor lg = host_tensor({300}, 74), lb = host_tensor({300}, 75);
    Tensor lgd = vk->prepare_weight(lg), lbd = vk->prepare_weight(lb);
    expect_close(vk->to_host(vk->layer_norm(vk->upload(l), 1e-5f, &lgd, &lbd)), cpu.layer_norm(l, 1e-5f, &lg, &lb),
                 1e-5, 1e-4, "layer_norm");
    expect_close(vk->to_host(vk->softmax(vk->upload(l))), cpu.softmax(l), 1e-7, 1e-5, "softmax");
    for (int64_t D : {8, 40, 64, 160, 320}) {
      for (bool causal : {false, true}) {
        const int heads = 2;
        const int64_t Tq = 77, Tk = causal ? 77 : 93;
        Tensor q = host_tensor({2, Tq, heads * D}, 80), k = host_tensor({2, Tk, heads * D}, 81),
               v = host_tensor({2, Tk, heads * D}, 82);
        Tensor ref = cpu.attention(q, k, v, heads, causal);
        Tensor got = vk->to_host(vk->attention(vk->upload(q), vk->upload(k), vk->upload(v), heads, causal));
        expect_close(got, ref, 1e-5, 1e-4, "attention D=" + std::to_string(D) + (causal ? " causal" : ""));
      }
    }
  }
}

TEST(vulkan, elementwise_and_layout_ops) {
  for (const DeviceInfo& d : vk_devices("vulkan.elementwise_and_layout_ops")) {
    auto vk = make_vk(d);
    Backend& cpu = cpu_backend();
    Tensor x = host_tensor({2, 6, 5, 7}, 90, -4.f, 4.f);
    Tensor xd = vk->upload(x);
    for (UnaryOp op : {UnaryOp::Silu, UnaryOp::GeluErf, UnaryOp::GeluTanh, UnaryOp::QuickGelu, UnaryOp::Relu,
                       UnaryOp::Tanh})
      expect_close(vk->to_host(vk->unary(op, xd)), cpu.unary(op, x), 1e-6, 1e-5, "unary " + std::to_string((int)op));
    Tensor gx = host_tensor({3, 5, 22}, 91, -3.f, 3.f);
    expect_close(vk->to_host(vk->geglu(vk->upload(gx))), cpu.geglu(gx), 1e-6, 1e-5, "geglu");
    for (std::vector<int64_t> bs : std::vector<std::vector<int64_t>>{{2, 6, 5, 7}, {6, 1, 1}, {1}, {2, 6, 1, 1},
                                                                      {7}, {5, 1}, {1, 1, 5, 7}}) {
      Tensor b = host_tensor(bs, 92);
      Tensor bd = vk->upload(b);
      expect_close(vk->to_host(vk->add(xd, bd)), cpu.add(x, b), 0, 1e-7, "add " + b.shape_str());
      expect_close(vk->to_host(vk->mul(xd, bd)), cpu.mul(x, b), 0, 1e-7, "mul " + b.shape_str());
      Tensor a = vk->upload(x), ah = x.contiguous();
      vk->add_(a, bd);
      cpu.add_(ah, b);
      expect_close(vk->to_host(a), ah, 0, 1e-7, "add_ " + b.shape_str());
    }
    Tensor y = host_tensor({2, 6, 5, 7}, 93);
    Tensor yd = vk->upload(y);
    expect_close(vk->to_host(vk->scale(xd, 0.37f)), cpu.scale(x, 0.37f), 0, 1e-7, "scale");
    expect_close(vk->to_host(vk->combine(xd, 7.5f, yd, -6.5f)), cpu.combine(x, 7.5f, y, -6.5f), 1e-6, 1e-6,
                 "combine");
    for (int dim : {0, 1, 2, 3}) {
      std::vector<int64_t> s = x.sizes();
      s[dim] = 3;
      Tensor b = host_tensor(s, 94);
      expect_close(vk->to_host(vk->concat(xd, vk->upload(b), dim)), cpu.concat(x, b, dim), 1e-30, 0,
                   "concat " + std::to_string(dim));
    }
    expect_close(vk->to_host(vk->upsample_nearest2x(xd)), cpu.upsample_nearest2x(x), 1e-30, 0, "upsample");
    Tensor nlc = vk->nchw_to_nlc(xd);
    expect_close(vk->to_host(nlc), cpu.nchw_to_nlc(x), 1e-30, 0, "nchw_to_nlc");
    expect_close(vk->to_host(vk->nlc_to_nchw(nlc, 5, 7)), x, 1e-30, 0, "nlc_to_nchw");
    expect_close(vk->to_host(vk->pad(xd, 1, 2, 0, 3)), cpu.pad(x, 1, 2, 0, 3), 1e-30, 0, "pad");
    std::vector<float> ts = {999.f, 1.f, 500.5f};
    expect_close(vk->to_host(vk->timestep_embedding(ts, 321, 10000.f)), cpu.timestep_embedding(ts, 321, 10000.f), 1e-30,
                 0, "timestep_embedding");
    for (DType t : kTypes) {
      const int64_t D = dtype_traits(t).block_size >= 256 ? 256 : 64;
      Tensor table = weight(t, {50, D}, 95);
      std::vector<int32_t> ids = {0, 49, 7, 7, 3};
      expect_close(vk->to_host(vk->get_rows(vk->prepare_weight(table), ids)),
                   cpu.get_rows(cpu.prepare_weight(table), ids), 1e-30, 1e-6, std::string("get_rows ") + dtype_name(t));
    }
    EXPECT_THROWS_CODE(vk->get_rows(vk->prepare_weight(weight(DType::F32, {4, 8}, 1)), {4}),
                       ErrorCode::InvalidArgument);
    EXPECT_THROWS_CODE(vk->add(xd, vk->upload(host_tensor({3}, 1))), ErrorCode::InvalidArgument);
  }
}

// Under a small vramBudget most weights are streamed: a chain of linear/conv/norm/get_rows operations over 14
// weights, run three times with no synchronisation in between (the streaming area wraps many times while earlier
// dispatches may still be running), gives the same bytes as the unbudgeted device, on the device (no CPU
// fallback), with the device's weight memory within the budget and later passes prefetching.
TEST(vulkan, vram_budget_streams_weights_with_prefetch) {
  for (const DeviceInfo& d : vk_devices("vulkan.vram_budget_streams_weights_with_prefetch")) {
    auto full = make_vk(d);
    // every weight type, [32, K] with K in {32 .. 256}: 2.3 to 6.6 KiB each
    const std::vector<std::pair<DType, int64_t>> types = {
        {DType::Q8_0, 128}, {DType::F16, 64},  {DType::Q4_K, 256}, {DType::F32, 32},  {DType::Q5_1, 128}, {DType::BF16, 64},
        {DType::Q6_K, 256}, {DType::Q4_0, 128}, {DType::Q5_K, 256}, {DType::Q5_0, 128}, {DType::Q4_1, 128}};
    const int L = (int)types.size();
    std::vector<Tensor> ws, bs;
    for (int i = 0; i < L; ++i) {
      ws.push_back(weight(types[i].first, {32, types[i].second}, 200 + i));
      bs.push_back(host_tensor({32}, 300 + i));
    }
    Tensor conv_w = weight(DType::F16, {8, 8, 3, 3}, 400), conv_b = host_tensor({8}, 401);
    Tensor gamma = host_tensor({8}, 402, 0.5f, 1.5f), beta = host_tensor({8}, 403);
    Tensor table = weight(DType::Q8_0, {40, 32}, 404);
    struct Prepared {
      std::vector<Tensor> w, b;
      Tensor conv_w, conv_b, gamma, beta, table;
    };
    // prepared in first-use order, as the WeightStore does
    auto prepare = [&](Backend& be) {
      Prepared p;
      p.table = be.prepare_weight(table);
      for (int i = 0; i < L; ++i) {
        p.w.push_back(be.prepare_weight(ws[i]));
        p.b.push_back(be.prepare_weight(bs[i]));
      }
      p.conv_w = be.prepare_weight(conv_w);
      p.conv_b = be.prepare_weight(conv_b);
      p.gamma = be.prepare_weight(gamma);
      p.beta = be.prepare_weight(beta);
      return p;
    };
    auto run = [&](Backend& be, Prepared& p) {
      std::vector<Tensor> outs;
      Tensor x = be.get_rows(p.table, {3, 1, 39, 0, 7, 7});  // [6, 32]
      for (int pass = 0; pass < 3; ++pass) {
        Tensor h = be.add(be.upload(Tensor::from_vector({6, 32}, random_vector(6 * 32, 500 + pass))), x);
        for (int i = 0; i < L; ++i) {
          Tensor in = h;
          while (in.shape[1] < p.w[i].shape[1]) in = be.concat(in, be.scale(in, 0.5f), 1);
          h = be.unary(UnaryOp::Tanh, be.linear(in, p.w[i], &p.b[i]));
        }
        Tensor fm = be.upload(Tensor::from_vector({1, 8, 6, 8}, random_vector(384, 600 + pass)));
        fm = be.group_norm(be.conv2d(fm, p.conv_w, &p.conv_b, 1, 1), 2, 1e-5f, &p.gamma, &p.beta, true);
        outs.push_back(h);
        outs.push_back(fm);
      }
      std::vector<Tensor> host;  // read back only at the end: three passes recorded without a wait
      for (Tensor& t : outs) host.push_back(be.to_host(t));
      return host;
    };
    Prepared pf = prepare(*full);
    std::vector<Tensor> ref = run(*full, pf);
    // 36 KiB: a 9 KiB area, just above the largest weight's 6.75 KiB; 40 KiB: 30 KiB resident of ~50 KiB, a 10 KiB
    // area; 52 KiB: most weights resident
    for (uint64_t budget : {36 * 1024, 40 * 1024, 52 * 1024}) {
    BackendOptions o;
    o.vram_budget = budget;
    auto vk = with_cpu_fallback(make_vk(d, o), make_cpu_backend());
    Prepared ps = prepare(*vk);
    std::vector<Tensor> got = run(*vk, ps);
    EXPECT_EQ(ref.size(), got.size());
    for (size_t i = 0; i < ref.size() && i < got.size(); ++i)  // the same kernels on the same bytes: identical
      if (got[i].sizes() != ref[i].sizes() || std::memcmp(got[i].data, ref[i].data, ref[i].nbytes()) != 0)
        expect_close(got[i], ref[i], 1e-30, 0, "streamed output " + std::to_string(i));
    const MemoryStats m = vk->memory_stats();
    std::fprintf(stderr,
                 "  %s vramBudget %llu: peak device weights %llu (area %llu), host weights %llu, streamed %llu in "
                 "%llu copies (%llu prefetched)\n",
                 d.id.c_str(), (unsigned long long)o.vram_budget, (unsigned long long)m.peak_weights,
                 (unsigned long long)m.stream_area, (unsigned long long)m.host_weights, (unsigned long long)m.streamed,
                 (unsigned long long)m.stream_copies, (unsigned long long)m.prefetched);
    EXPECT_TRUE(m.peak_weights > 0 && m.peak_weights <= o.vram_budget);
    EXPECT_TRUE(m.weights <= o.vram_budget);
    EXPECT_TRUE(m.host_weights > 0 && m.stream_area == o.vram_budget / 4);
    if (m.host_weights > m.stream_area) {
      EXPECT_TRUE(m.streamed > m.host_weights);  // the area holds a fraction: every pass streams again
      EXPECT_TRUE(m.prefetched > 0);
    } else {
      EXPECT_EQ(m.streamed, m.host_weights);  // all streamed weights stay in the area after their first copy
    }
    for (auto& f : vk->fallback_counts())
      SDN_FAIL(op_name(f.first) << " ran on the CPU " << f.second << " time(s)");
    // weights are device tensors either way; a streamed one reads back as stored
    for (int i = 0; i < L; ++i) EXPECT_TRUE(ps.w[i].on_device());
    Tensor back = vk->to_host(ps.w[L - 1]);
    EXPECT_TRUE(back.nbytes() == ws[L - 1].nbytes() && std::memcmp(back.data, ws[L - 1].data, back.nbytes()) == 0);
    // freeing the weights gives the resident memory and the streaming area back
    ps = Prepared();
    EXPECT_EQ(vk->memory_stats().weights, (uint64_t)0);
    EXPECT_EQ(vk->memory_stats().host_weights, (uint64_t)0);
    }
  }
}

// A weight larger than the streaming area allows (3/4 of a quarter of the budget) stays in host memory and its
// operation runs on the CPU through the fallback (counted), with the right result.
TEST(vulkan, vram_budget_weight_too_large_to_stream_runs_on_cpu) {
  for (const DeviceInfo& d : vk_devices("vulkan.vram_budget_weight_too_large_to_stream_runs_on_cpu")) {
    BackendOptions o;
    o.vram_budget = 40000;  // room for the first weight (17408 bytes) + a 9984-byte area (7488 streamable)
    auto vk = with_cpu_fallback(make_vk(d, o), make_cpu_backend());
    Tensor w1 = weight(DType::Q8_0, {64, 256}, 1), w2 = weight(DType::Q8_0, {64, 256}, 2);
    Tensor a = vk->prepare_weight(w1), b = vk->prepare_weight(w2);
    EXPECT_TRUE(a.on_device());
    EXPECT_TRUE(!b.on_device());
    Tensor x = host_tensor({5, 256}, 3);
    Tensor y = vk->linear(vk->upload(x), a, nullptr);
    expect_close(vk->to_host(vk->linear(vk->upload(x), b, nullptr)), cpu_backend().linear(x, w2, nullptr), 1e-4, 1e-4,
                 "over-budget weight on the CPU");
    expect_close(vk->to_host(y), cpu_backend().linear(x, w1, nullptr), 1e-4, 1e-4, "weight on the device");
    EXPECT_TRUE(vk->memory_stats().weights > 0 && vk->memory_stats().weights <= o.vram_budget);
    bool counted = false;
    for (auto& f : vk->fallback_counts()) counted = counted || f.first == Op::Linear;
    EXPECT_TRUE(counted);
  }
}

// The tiny SD model on the device matches the CPU, with no CPU fallback; then again under a vramBudget of half its
// device weights (most streamed): the same image bytes as without the budget, no fallback, weights within budget.
TEST(vulkan, tiny_sd_pipeline_matches_cpu_and_streams_under_vram_budget) {
  for (const DeviceInfo& d : vk_devices("vulkan.tiny_sd_pipeline_matches_cpu_and_streams_under_vram_budget")) {
    auto vk = with_cpu_fallback(make_vk(d), make_cpu_backend());
    GenerateParams p;
    p.prompt = "the red and (green:1.2) thin [rain]";
    p.negative_prompt = "other";
    p.width = 64;
    p.height = 64;
    p.steps = 2;
    p.cfg_scale = 5.f;
    p.sampler = "euler_a";
    p.seed = 11;
    std::vector<Image> a, b;
    {
      auto store = std::make_unique<WeightStore>(sdntest::make_tiny_sd(), cpu_backend());
      DiffusionPipeline pipe(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
      a = pipe.generate(p, {});
    }
    uint64_t total = 0;
    {
      auto store = std::make_unique<WeightStore>(sdntest::make_tiny_sd(), *vk);
      DiffusionPipeline pipe(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
      b = pipe.generate(p, {});
      total = vk->memory_stats().weights;
    }
    EXPECT_EQ(vk->memory_stats().weights, (uint64_t)0);  // device weights are freed with the model
    EXPECT_EQ(a.size(), b.size());
    EXPECT_EQ(a[0].data.size(), b[0].data.size());
    double se = 0;
    int worst = 0;
    for (size_t i = 0; i < a[0].data.size(); ++i) {
      int e = std::abs((int)a[0].data[i] - (int)b[0].data[i]);
      worst = std::max(worst, e);
      se += (double)e * e;
    }
    double mse = se / (double)a[0].data.size();
    double psnr = mse == 0 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
    std::fprintf(stderr, "  tiny SD on %s vs cpu: PSNR %.1f dB, max |diff| %d\n", d.id.c_str(), psnr, worst);
    EXPECT_TRUE(psnr >= 40.0);
    for (auto& f : vk->fallback_counts())
      SDN_FAIL(op_name(f.first) << " ran on the CPU " << f.second << " time(s)");

    // under a vramBudget of half the device weights (enough for the largest weight to be streamed)
    uint64_t largest = 0;
    for (auto& kv : sdntest::make_tiny_sd()) largest = std::max<uint64_t>(largest, kv.second.nbytes());
    BackendOptions o;
    o.vram_budget = std::max<uint64_t>(total / 2, (largest + 256) * 16 / 3 + 4096);
    EXPECT_TRUE(o.vram_budget < total);
    auto vs = with_cpu_fallback(make_vk(d, o), make_cpu_backend());
    std::vector<Image> c;
    {
      auto store = std::make_unique<WeightStore>(sdntest::make_tiny_sd(), *vs);
      DiffusionPipeline pipe(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
      c = pipe.generate(p, {});
      const MemoryStats m = vs->memory_stats();
      std::fprintf(stderr,
                   "  vramBudget %llu for %llu bytes of device weights: peak device weights %llu, host weights %llu, "
                   "streamed %llu bytes in %llu copies (%llu prefetched)\n",
                   (unsigned long long)o.vram_budget, (unsigned long long)total, (unsigned long long)m.peak_weights,
                   (unsigned long long)m.host_weights, (unsigned long long)m.streamed,
                   (unsigned long long)m.stream_copies, (unsigned long long)m.prefetched);
      EXPECT_TRUE(m.host_weights > 0 && m.prefetched > 0);
      EXPECT_TRUE(m.peak_weights <= o.vram_budget);
    }
    EXPECT_EQ(vs->memory_stats().weights, (uint64_t)0);  // resident weights and the streaming area are freed too
    EXPECT_TRUE(c.size() == b.size() && c[0].data == b[0].data);  // same kernels, same bytes: the same image
    for (auto& f : vs->fallback_counts())
      SDN_FAIL("under vramBudget: " << op_name(f.first) << " ran on the CPU " << f.second << " time(s)");
  }
}

// An SDXL ControlNet (label_emb, linear proj_in/out, no attention at level 0, depth per level; lllyasviel names over
// the tiny SDXL U-Net's encoder) on the device against the CPU: hint and every residual, batch 2 with the vector
// conditioning y, and no op falling back to the CPU.
TEST(vulkan, sdxl_controlnet_residuals_match_cpu_with_no_fallback) {
  for (const DeviceInfo& d : vk_devices("vulkan.sdxl_controlnet_residuals_match_cpu_with_no_fallback")) {
    TinySdConfig c;
    c.family = "sdxl";
    c.unet_mult = {1, 2, 4};
    c.depth = {1, 1, 2};
    std::map<std::string, Tensor> cn;
    const std::string U = "model.diffusion_model.";
    for (auto& kv : make_tiny_sd(c))
      if (kv.first.compare(0, U.size(), U) == 0) {
        std::string r = kv.first.substr(U.size());
        if (r.compare(0, 14, "output_blocks.") != 0 && r.compare(0, 4, "out.") != 0) cn["control_model." + r] = kv.second;
      }
    const int64_t hint[8][2] = {{16, 3}, {16, 16}, {32, 16}, {32, 32}, {96, 32}, {96, 96}, {256, 96}, {32, 256}};
    for (int k = 0; k < 8; ++k) {
      const std::string p = "control_model.input_hint_block." + std::to_string(2 * k);
      cn[p + ".weight"] = host_tensor({hint[k][0], hint[k][1], 3, 3}, 70 + k, -0.2f, 0.2f);
      cn[p + ".bias"] = host_tensor({hint[k][0]}, 80 + k, -0.1f, 0.1f);
    }
    const int64_t chans[] = {32, 32, 32, 32, 64, 64, 64, 128, 128, 128};  // 9 input blocks, then the middle block
    for (int i = 0; i < 10; ++i) {
      const std::string p = i < 9 ? "control_model.zero_convs." + std::to_string(i) + ".0" : "control_model.middle_block_out.0";
      cn[p + ".weight"] = host_tensor({chans[i], chans[i], 1, 1}, 90 + i, -0.2f, 0.2f);
      cn[p + ".bias"] = host_tensor({chans[i]}, 100 + i, -0.1f, 0.1f);
    }
    Tensor x = host_tensor({2, 4, 16, 16}, 111), ctx = host_tensor({2, 12, 128}, 112), y = host_tensor({2, 32 + 6 * 256}, 113);
    Tensor image = host_tensor({1, 3, 128, 128}, 114, 0.f, 1.f);
    const std::vector<float> t = {900.f, 321.5f};
    std::vector<Tensor> ref;
    Tensor ref_hint;
    {
      WeightStore w(cn, cpu_backend());
      ControlNetModel m(w, "tiny-sdxl-controlnet", 0, 16);
      EXPECT_EQ(m.family(), std::string("sdxl"));
      EXPECT_EQ(m.outputs(), 10);
      ref_hint = m.hint(image).contiguous();
      for (const Tensor& r : m.forward(x, t, ctx, ref_hint, 0.8f, nullptr, &y)) ref.push_back(r.contiguous());
    }
    auto vk = with_cpu_fallback(make_vk(d), make_cpu_backend());
    {
      WeightStore w(cn, *vk);
      ControlNetModel m(w, "tiny-sdxl-controlnet", 0, 16);
      Tensor h = m.hint(vk->upload(image));
      expect_close(vk->to_host(h), ref_hint, 1e-4, 1e-3, "hint");
      Tensor yd = vk->upload(y);
      std::vector<Tensor> got = m.forward(vk->upload(x), t, vk->upload(ctx), h, 0.8f, nullptr, &yd);
      EXPECT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < got.size() && i < ref.size(); ++i)
        expect_close(vk->to_host(got[i]), ref[i], 2e-3, 2e-3, "residual " + std::to_string(i));
      m.release();
    }
    for (auto& f : vk->fallback_counts()) SDN_FAIL(op_name(f.first) << " ran on the CPU " << f.second << " time(s)");
  }
}

TEST(vulkan, out_of_memory_is_a_typed_error_naming_the_options) {
  for (const DeviceInfo& d : vk_devices("vulkan.out_of_memory_is_a_typed_error_naming_the_options")) {
    auto vk = make_vk(d);
    bool thrown = false;
    try {
      // 64 GiB of f32 in one tensor: beyond any device's largest allocation
      vk->empty({16, 1024, 1024, 1024}, DType::F32);
    } catch (const Error& e) {
      thrown = true;
      EXPECT_TRUE(e.code() == ErrorCode::OutOfMemory);
      std::string m = e.what();
      EXPECT_TRUE(m.find("vaeTiling") != std::string::npos && m.find("'cpu'") != std::string::npos);
    }
    EXPECT_TRUE(thrown);
    // the backend still works afterwards
    Tensor h = host_tensor({4, 4}, 1);
    expect_close(vk->to_host(vk->scale(vk->upload(h), 2.f)), cpu_backend().scale(h, 2.f), 1e-30, 0, "after OOM");
  }
}

// Tiled VAE encode on the device: the seam error against the untiled encode on the same device (and the device's
// untiled encode against the CPU's), with the tiles of the CPU test (16 latent pixels, 8 of overlap, margin 2) over
// a 160x224 image, and no op falling back to the CPU.
TEST(vulkan, tiled_vae_encode_seam_error_matches_cpu) {
  for (const DeviceInfo& d : vk_devices("vulkan.tiled_vae_encode_seam_error_matches_cpu")) {
    auto vk = with_cpu_fallback(make_vk(d), make_cpu_backend());
    const int H = 160, W = 224;
    std::vector<float> px = random_vector((size_t)3 * H * W, 43, -1.f, 1.f);
    // smooth it a little (a box blur along rows): closer to a photo than white noise
    for (size_t r = 0; r < (size_t)3 * H; ++r)
      for (int x = W - 1; x >= 2; --x) px[r * W + x] = (px[r * W + x] + px[r * W + x - 1] + px[r * W + x - 2]) / 3.f;
    auto snr = [](const std::vector<float>& a, const std::vector<float>& b, size_t off, size_t n) {
      double s = 0, e = 0;
      for (size_t i = off; i < off + n; ++i) {
        s += (double)a[i] * a[i];
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
      }
      return e == 0 ? 99.0 : 10.0 * std::log10(s / e);
    };
    std::vector<float> cpu_whole, cpu_tiled, vk_whole, vk_tiled;
    {
      auto store = std::make_unique<WeightStore>(sdntest::make_tiny_sd(), cpu_backend());
      DiffusionPipeline pipe(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
      cpu_whole = pipe.encode_planes(px, H, W, 0, 0, 0, nullptr);
      cpu_tiled = pipe.encode_planes(px, H, W, 16, 8, 2, nullptr);
    }
    {
      auto store = std::make_unique<WeightStore>(sdntest::make_tiny_sd(), *vk);
      DiffusionPipeline pipe(std::move(store), ClipTokenizer::from_merges(sdntest::tiny_merges()));
      vk_whole = pipe.encode_planes(px, H, W, 0, 0, 0, nullptr);
      vk_tiled = pipe.encode_planes(px, H, W, 16, 8, 2, nullptr);
    }
    const size_t half = cpu_whole.size() / 2;
    EXPECT_EQ(vk_tiled.size(), cpu_whole.size());
    const double seam = snr(vk_whole, vk_tiled, 0, half), dev = snr(cpu_whole, vk_whole, 0, cpu_whole.size()),
                 dev_tiled = snr(cpu_tiled, vk_tiled, 0, cpu_tiled.size()), cpu_seam = snr(cpu_whole, cpu_tiled, 0, half);
    std::fprintf(stderr,
                 "  tiled VAE encode on %s: mean %.1f dB SNR vs its untiled encode (cpu: %.1f dB); device vs cpu: "
                 "untiled %.1f dB, tiled %.1f dB\n",
                 d.id.c_str(), seam, cpu_seam, dev, dev_tiled);
    EXPECT_TRUE(dev > 60 && dev_tiled > 60);  // the device computes what the CPU computes
    EXPECT_TRUE(std::fabs(seam - cpu_seam) < 1.0);
    for (auto& f : vk->fallback_counts()) SDN_FAIL(op_name(f.first) << " ran on the CPU " << f.second << " time(s)");
  }
}
