// The cooperative-matrix GEMM selection of the Vulkan backend (coopmat_plan / coopmat_selfcheck in
// vulkan_backend.cpp). The kernel itself (matmul_cm.comp) needs VK_NV_cooperative_matrix, which no device here
// offers, so these tests check what can run anywhere: every device says whether the kernel is used and why not, and
// with SDN_VULKAN_COOPMAT=test the other plain GEMM kernel stands in for it, so the self-check, its use after a pass
// and its refusal after a wrong result (SDN_VULKAN_COOPMAT_FAULT=1) run on lavapipe.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backends/backend.h"
#include "core/quant.h"
#include "sdn/error.h"
#include "test.h"
#include "vk_devices.h"

using namespace sdn;
using namespace sdntest;

namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// Sets the two variables for one scope (the backend reads them when it is created).
struct Env {
  Env(const char* mode, const char* fault) {
    set("SDN_VULKAN_COOPMAT", mode);
    set("SDN_VULKAN_COOPMAT_FAULT", fault);
  }
  ~Env() {
    unsetenv("SDN_VULKAN_COOPMAT");
    unsetenv("SDN_VULKAN_COOPMAT_FAULT");
  }
  static void set(const char* k, const char* v) {
    if (v) setenv(k, v, 1);
    else unsetenv(k);
  }
};

// linear (f16 and q4_K weights) and a 3x3 conv2d on the backend against the CPU backend.
void check_gemms(Backend& be, const std::string& what) {
  Backend& cpu = cpu_backend();
  for (DType t : {DType::F16, DType::Q4_K}) {
    const int64_t M = 70, K = 256, N = 67;
    std::vector<float> wv = random_vector((size_t)(N * K), 7, -0.5f, 0.5f);
    auto buf = std::shared_ptr<char>(new char[N * dtype_row_bytes(t, K)], std::default_delete<char[]>());
    for (int64_t r = 0; r < N; ++r) quantize_row(t, wv.data() + r * K, buf.get() + r * dtype_row_bytes(t, K), K);
    Tensor w = Tensor::wrap(buf.get(), {N, K}, t, buf);
    Tensor x = Tensor::from_vector({M, K}, random_vector((size_t)(M * K), 8));
    Tensor b = Tensor::from_vector({N}, random_vector((size_t)N, 9));
    Tensor ref = cpu.linear(x, w, &b);
    Tensor wd = be.prepare_weight(w), bd = be.prepare_weight(b);
    Tensor got = be.to_host(be.linear(be.upload(x), wd, &bd));
    std::string why;
    if (!all_close(got.f32(), ref.f32(), (size_t)ref.numel(), 1e-3, 1e-3, &why))
      SDN_FAIL(what << ": linear " << dtype_name(t) << ": " << why);
  }
  Tensor x = Tensor::from_vector({1, 6, 10, 13}, random_vector(6 * 10 * 13, 10));
  Tensor w = Tensor::from_vector({11, 6, 3, 3}, random_vector(11 * 6 * 9, 11, -0.5f, 0.5f));
  Tensor ref = cpu.conv2d(x, w, nullptr, 1, 1);
  Tensor got = be.to_host(be.conv2d(be.upload(x), be.prepare_weight(w), nullptr, 1, 1));
  std::string why;
  if (!all_close(got.f32(), ref.f32(), (size_t)ref.numel(), 1e-3, 1e-3, &why)) SDN_FAIL(what << ": conv2d: " << why);
}

}  // namespace

TEST(vulkan_coopmat, every_device_says_whether_the_kernel_is_used) {
  for (const DeviceInfo& d : vk_devices("vulkan_coopmat.every_device_says_whether_the_kernel_is_used")) {
    std::fprintf(stderr, "  %s (%s): listed: %s\n", d.id.c_str(), d.name.c_str(), d.cooperative_matrix_kernel.c_str());
    EXPECT_TRUE(starts_with(d.cooperative_matrix_kernel, "not used: ") ||
                starts_with(d.cooperative_matrix_kernel, "candidate"));
    auto be = find_backend_factory("vulkan")->create(d.index, BackendOptions());
    const std::string s = be->device_info().cooperative_matrix_kernel;
    std::fprintf(stderr, "  %s after the self-check: %s\n", d.id.c_str(), s.c_str());
    EXPECT_TRUE(starts_with(s, "in use: ") || starts_with(s, "not used: "));
    if (!d.cooperative_matrix) EXPECT_TRUE(starts_with(s, "not used: "));
    check_gemms(*be, d.id + " default");
  }
}

TEST(vulkan_coopmat, off_turns_it_off) {
  for (const DeviceInfo& d : vk_devices("vulkan_coopmat.off_turns_it_off")) {
    Env env("off", nullptr);
    auto be = find_backend_factory("vulkan")->create(d.index, BackendOptions());
    EXPECT_EQ(be->device_info().cooperative_matrix_kernel, std::string("not used: turned off by SDN_VULKAN_COOPMAT=off"));
  }
}

TEST(vulkan_coopmat, self_check_passes_and_the_candidate_is_used) {
  for (const DeviceInfo& d : vk_devices("vulkan_coopmat.self_check_passes_and_the_candidate_is_used")) {
    Env env("test", nullptr);
    auto be = find_backend_factory("vulkan")->create(d.index, BackendOptions());
    const std::string s = be->device_info().cooperative_matrix_kernel;
    std::fprintf(stderr, "  %s: %s\n", d.id.c_str(), s.c_str());
    EXPECT_TRUE(starts_with(s, "in use: test stand-in (SDN_VULKAN_COOPMAT=test)"));
    EXPECT_TRUE(s.find("self-check passed") != std::string::npos);
    check_gemms(*be, d.id + " stand-in in use");
  }
}

TEST(vulkan_coopmat, self_check_mismatch_disables_it_with_the_reason) {
  for (const DeviceInfo& d : vk_devices("vulkan_coopmat.self_check_mismatch_disables_it_with_the_reason")) {
    Env env("test", "1");
    auto be = find_backend_factory("vulkan")->create(d.index, BackendOptions());
    const std::string s = be->device_info().cooperative_matrix_kernel;
    std::fprintf(stderr, "  %s: %s\n", d.id.c_str(), s.c_str());
    EXPECT_TRUE(starts_with(s, "not used: the self-check of the test stand-in"));
    EXPECT_TRUE(s.find("max |difference|") != std::string::npos && s.find("allowed") != std::string::npos);
    check_gemms(*be, d.id + " after a failed self-check");  // the plain kernel, results unchanged
  }
}
