// The Vulkan backend: device discovery (the factory), device memory (a pooled allocator for activations, an arena
// for weights), command batching, and every operation of backends/backend.h as a compute shader
// (shaders/*.comp, compiled to SPIR-V by glslc at build time and embedded, see cmake/embed_spirv.cmake).
//
// Design notes
//  * Buffers are addressed by device address (Vulkan 1.2 bufferDeviceAddress) and passed in push constants: no
//    descriptor sets, and no maxStorageBufferRange limit (lavapipe: 128 MiB; a 512x512x128 f32 VAE activation is
//    134 MB), so nothing needs splitting for that limit. Single allocations above maxMemoryAllocationSize fail
//    with OutOfMemory naming the options that make tensors smaller.
//  * Operations are recorded into a command buffer with a full memory barrier after each; a batch is submitted
//    when it holds kOpsPerBatch operations, when its staging memory is full, or at to_host()/synchronize().
//    Three command buffers rotate, so recording continues while an earlier batch runs.
//  * Host data goes in and out through per-command-buffer host-visible staging memory (copies recorded in order
//    with the operations).
//  * Weights: prepare_weight() uploads them once in their stored type (quantized weights stay quantized; the
//    shaders dequantize). With BackendOptions::vram_budget, the budget is split: a quarter is the streaming area,
//    the rest holds resident weights in the order they are first used. A weight that does not fit the resident
//    part stays in host memory (as stored: a view of the memory-mapped file, no copy) and is streamed: see
//    "Weight streaming" below.
//  * Weight streaming (vramBudget). A streamed weight is a device tensor whose buffer is a StreamBuf (its host
//    copy); when an operation takes its address, the weight is copied (staging + vkCmdCopyBuffer, recorded in
//    order with the operations) into the streaming area, a device-local ring that caches the recently used
//    streamed weights (FIFO eviction). Each streamed weight remembers which streamed weight followed it the last
//    time (the model's operation order repeats every step), and the operation that uses weight i records the copy
//    of weight i+1 (and the small vectors before it) just before its own dispatch, with no barrier between the
//    two, so the copy runs while operation i computes (prefetch). A copy never overwrites memory an unfinished
//    dispatch reads: every dispatch is followed by a full barrier, so a copy recorded after it waits for it in the
//    queue; the one dispatch recorded after a prefetch copy (the current operation) reads only regions pinned for
//    it, which the ring never hands out. One queue only (no transfer queue yet): the overlap is what the driver
//    makes of a copy and a dispatch between the same two barriers.
//  * Two kernel variants for linear/conv2d/attention: the shared-memory tiled ones (matmul.comp, attention.comp)
//    on GPUs, register-blocked ones (matmul_rb.comp, attention_rb.comp) on CPU devices such as lavapipe, where
//    memory loads are per-lane scalar loops; SDN_VULKAN_KERNELS=tiled|blocked forces one.
//  * Device-feature variants, each with its plain fallback, picked per device from what it reports (Core::
//    choose_features; SDN_VULKAN_FEATURES=none|all|subgroup,f16,int8 narrows the choice; SDN_DEBUG prints it).
//    GPUs get every one they offer; CPU devices the subgroup reductions only (the narrow loads measured slower on
//    lavapipe, see README "Tests"):
//     - subgroup: norm_sg / softmax_sg reduce with subgroupAdd/subgroupMax (reduce.glsl) instead of a shared-memory
//       tree, when VkPhysicalDeviceSubgroupProperties has BASIC + ARITHMETIC in the compute stage; any subgroup size.
//     - f16: f16/bf16 weights are read as float16_t/f16vecN/uint16_t (the *_s16 modules, storageBuffer16BitAccess)
//       instead of being unpacked from 32-bit words. Arithmetic stays f32 (shaderFloat16 is not needed or used).
//     - int8: quantized weights are read as uint8_t/int8_t quants and float16_t scales (the *_s8 modules,
//       storageBuffer8BitAccess + storageBuffer16BitAccess). Dequantization and products stay f32; there is no
//       integer dot-product path (shaderInt8 arithmetic and VK_KHR_shader_integer_dot_product are not used).
//    The op harness runs every variant (features none and all, with both GEMM variants) on each Vulkan device.
//    Only lavapipe (a CPU device) has run them so far; no GPU has.
//  * Cooperative-matrix GEMM (matmul_cm.comp, VK_NV_cooperative_matrix): chosen per device by coopmat_plan and a
//    self-check against the plain kernel at backend creation (coopmat_selfcheck); DeviceInfo's
//    cooperative_matrix_kernel says whether it is used and why not. Compiled, but never executed on any device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "backends/vulkan/vk_api.h"
#include "core/quant.h"
#include "sdn/error.h"

namespace sdn {

namespace vk_spirv {
const uint32_t* find(const char* name, size_t* n);
}

namespace {

using vk::Api;

constexpr int kSlots = 3;                        // command buffers in rotation
constexpr int kOpsPerBatch = 64;                 // operations per submitted command buffer
constexpr size_t kStagingBytes = 32ull << 20;    // host-visible staging per command buffer
constexpr size_t kWeightChunk = 256ull << 20;    // weight arena allocation size
constexpr uint32_t kMaxGroups = 65535;           // workgroups per dispatch dimension (the minimum every device has)

[[noreturn]] void bad(const std::string& op, const std::string& msg) {
  throw_error(ErrorCode::InvalidArgument, op + ": " + msg);
}

std::string mib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", (double)b / (1024.0 * 1024.0));
  return buf;
}

std::string vendor_name(uint32_t id) {
  switch (id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x1022: return "AMD";
    case 0x8086: return "Intel";
    case 0x106B: return "Apple";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x10005: return "Mesa";
    default: {
      char b[16];
      std::snprintf(b, sizeof b, "0x%04x", id);
      return b;
    }
  }
}

bool has_extension(const Api& api, VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> v(n);
  api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, v.data());
  for (auto& e : v)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Cooperative-matrix GEMM (shaders/matmul_cm.comp), selection part 1: whether a device can run it. It is compiled
// only where the build's glslc accepts GL_NV_cooperative_matrix (Debian bookworm's glslang 12 rejects the KHR
// extension), so it needs VK_NV_cooperative_matrix, shaderFloat16, vulkanMemoryModel (the SPIR-V uses the Vulkan
// memory model), 32-wide subgroups, and a 16 x N x 16 f16 x f16 -> f32 subgroup shape in the device's list (N = 16
// or 8). Part 2 (VulkanBackend::coopmat_selfcheck) runs it against the plain kernel before it is used.
// SDN_VULKAN_COOPMAT=off (or SDN_VULKAN_KERNELS, which forces a plain kernel) turns it off; =test makes the other
// plain GEMM kernel stand in for it on any device, so the selection and self-check logic run where no device has the
// extension (tests, lavapipe); with SDN_VULKAN_COOPMAT_FAULT=1 the self-check sees a wrong result (tests of the path
// that disables it).
// ---------------------------------------------------------------------------------------------------------
// The feature structs sdnode reads (core, 1.1, 1.2 and, where the device lists the extension, NV cooperative
// matrix), queried in one vkGetPhysicalDeviceFeatures2 call. Not copyable: the pNext chain points into it.
struct DeviceFeatures {
  VkPhysicalDeviceFeatures2 f2{};
  VkPhysicalDeviceVulkan11Features f11{};
  VkPhysicalDeviceVulkan12Features f12{};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{};
  DeviceFeatures(const Api& api, VkPhysicalDevice pd) {
    f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
    f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
    cmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
    f2.pNext = &f12;
    f12.pNext = &f11;
    if (has_extension(api, pd, "VK_NV_cooperative_matrix")) f11.pNext = &cmf;
    api.vkGetPhysicalDeviceFeatures2(pd, &f2);
  }
  DeviceFeatures(const DeviceFeatures&) = delete;
  DeviceFeatures& operator=(const DeviceFeatures&) = delete;
};

struct CoopmatPlan {
  bool candidate = false;  // the self-check decides
  bool test = false;       // SDN_VULKAN_COOPMAT=test: a plain kernel stands in
  uint32_t n = 0;          // N size of the matrices (specialization constant 0 of matmul_cm.comp)
  std::string why;         // why not, when !candidate
};

std::string coopmat_env() {
  const char* v = std::getenv("SDN_VULKAN_COOPMAT");
  return v ? v : "";
}

CoopmatPlan coopmat_plan(const Api& api, VkPhysicalDevice pd) {
  CoopmatPlan p;
  const std::string env = coopmat_env();
  if (env == "off") {
    p.why = "turned off by SDN_VULKAN_COOPMAT=off";
    return p;
  }
  if (env == "test") {
    p.candidate = p.test = true;
    return p;
  }
  if (const char* k = std::getenv("SDN_VULKAN_KERNELS")) {
    if (*k) {
      p.why = std::string("SDN_VULKAN_KERNELS=") + k + " forces a plain kernel";
      return p;
    }
  }
  size_t words = 0;
  if (!vk_spirv::find("linear_cm_f16", &words)) {
    p.why = "not compiled in (the build's glslc does not accept GL_NV_cooperative_matrix)";
    return p;
  }
  if (!has_extension(api, pd, "VK_NV_cooperative_matrix")) {
    p.why = has_extension(api, pd, "VK_KHR_cooperative_matrix")
                ? "the device offers VK_KHR_cooperative_matrix only; sdnode's kernel is built for "
                  "VK_NV_cooperative_matrix (the build tools lack the KHR extension)"
                : "the device offers no cooperative-matrix extension";
    return p;
  }
  const DeviceFeatures have(api, pd);
  const VkPhysicalDeviceCooperativeMatrixFeaturesNV& cmf = have.cmf;
  const VkPhysicalDeviceVulkan12Features& f12 = have.f12;
  VkPhysicalDeviceSubgroupProperties sub{};
  sub.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
  VkPhysicalDeviceProperties2 p2{};
  p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  p2.pNext = &sub;
  api.vkGetPhysicalDeviceProperties2(pd, &p2);
  if (!cmf.cooperativeMatrix) p.why = "the driver lists VK_NV_cooperative_matrix but not its cooperativeMatrix feature";
  else if (!f12.shaderFloat16) p.why = "the device lacks shaderFloat16";
  else if (!f12.vulkanMemoryModel) p.why = "the device lacks vulkanMemoryModel";
  else if (sub.subgroupSize != 32 || !(sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
    p.why = "the kernel needs 32-wide subgroups in compute shaders (the device has " +
            std::to_string(sub.subgroupSize) + ")";
  else if (!api.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
    p.why = "the loader lacks vkGetPhysicalDeviceCooperativeMatrixPropertiesNV";
  if (!p.why.empty()) return p;
  uint32_t n = 0;
  api.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, nullptr);
  std::vector<VkCooperativeMatrixPropertiesNV> props(n);
  for (auto& c : props) c.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
  api.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, props.data());
  for (uint32_t want : {16u, 8u})
    for (uint32_t i = 0; i < n && !p.n; ++i) {
      const VkCooperativeMatrixPropertiesNV& c = props[i];
      if (c.MSize == 16 && c.KSize == 16 && c.NSize == want && c.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
          c.BType == VK_COMPONENT_TYPE_FLOAT16_NV && c.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
          c.DType == VK_COMPONENT_TYPE_FLOAT32_NV && c.scope == VK_SCOPE_SUBGROUP_NV)
        p.n = want;
    }
  if (!p.n) {
    p.why = "none of the device's " + std::to_string(n) +
            " cooperative-matrix shapes is 16x16x16 or 16x8x16 f16 x f16 -> f32 per subgroup";
    return p;
  }
  p.candidate = true;
  return p;
}

// The device-creation part: the extension and features matmul_cm.comp needs (nothing for a test stand-in).
void coopmat_device_features(const CoopmatPlan& p, VkPhysicalDeviceVulkan12Features& f12,
                             VkPhysicalDeviceCooperativeMatrixFeaturesNV& cmf, std::vector<const char*>& exts) {
  if (!p.candidate || p.test) return;
  cmf.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV;
  cmf.cooperativeMatrix = VK_TRUE;
  cmf.pNext = f12.pNext;
  f12.pNext = &cmf;
  f12.shaderFloat16 = VK_TRUE;
  f12.vulkanMemoryModel = VK_TRUE;
  exts.push_back("VK_NV_cooperative_matrix");
}

std::string coopmat_pending(const CoopmatPlan& p) {
  if (!p.candidate) return "not used: " + p.why;
  return std::string("candidate") + (p.test ? " (SDN_VULKAN_COOPMAT=test: a plain kernel stands in)" : "") +
         ": a self-check against the plain kernel decides when a model loads";
}

// ---------------------------------------------------------------------------------------------------------
// Instance and device discovery (once per process)
// ---------------------------------------------------------------------------------------------------------
struct Discovery {
  Api* api = nullptr;
  VkInstance instance = VK_NULL_HANDLE;
  std::string reason;  // why there are no devices
  std::vector<VkPhysicalDevice> phys;
  std::vector<DeviceInfo> infos;
  std::vector<uint32_t> queue_family;
};

Discovery& discovery() {
  static Discovery d;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string why;
    Api* api = vk::load_loader(&why);
    if (!api) {
      d.reason = why;
      return;
    }
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "sdnode";
    app.pEngineName = "sdnode";
    app.apiVersion = VK_API_VERSION_1_2;
    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    // MoltenVK (and other portability drivers) are only listed when the application asks for them
    std::vector<const char*> exts;
    {
      uint32_t n = 0;
      if (api->vkEnumerateInstanceExtensionProperties) {
        api->vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr);
        std::vector<VkExtensionProperties> v(n);
        api->vkEnumerateInstanceExtensionProperties(nullptr, &n, v.data());
        for (auto& e : v)
          if (std::strcmp(e.extensionName, "VK_KHR_portability_enumeration") == 0) {
            exts.push_back("VK_KHR_portability_enumeration");
            ci.flags |= 0x00000001;  // VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
          }
      }
    }
    ci.enabledExtensionCount = (uint32_t)exts.size();
    ci.ppEnabledExtensionNames = exts.data();
    VkResult r = api->vkCreateInstance(&ci, nullptr, &d.instance);
    if (r != VK_SUCCESS) {
      d.reason = "the Vulkan loader could not create an instance (" + vk::result_name(r) +
                 (r == VK_ERROR_INCOMPATIBLE_DRIVER ? ": no Vulkan driver is installed" : "") + ")";
      return;
    }
    std::string missing = vk::load_instance_functions(*api, d.instance);
    if (!missing.empty()) {
      d.reason = "the Vulkan loader lacks " + missing + " (Vulkan 1.2 is needed)";
      return;
    }
    d.api = api;
    uint32_t n = 0;
    api->vkEnumeratePhysicalDevices(d.instance, &n, nullptr);
    d.phys.resize(n);
    api->vkEnumeratePhysicalDevices(d.instance, &n, d.phys.data());
    d.phys.resize(n);
    if (n == 0) d.reason = "the Vulkan loader found no devices (no Vulkan driver installed?)";
    for (uint32_t i = 0; i < n; ++i) {
      VkPhysicalDevice pd = d.phys[i];
      VkPhysicalDeviceProperties props{};
      api->vkGetPhysicalDeviceProperties(pd, &props);
      DeviceInfo info;
      info.backend = "vulkan";
      info.index = (int)i;
      info.id = "vulkan:" + std::to_string(i);
      info.name = props.deviceName;
      info.vendor = vendor_name(props.vendorID);
      switch (props.deviceType) {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: info.type = "discrete"; break;
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: info.type = "integrated"; break;
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: info.type = "virtual"; break;
        case VK_PHYSICAL_DEVICE_TYPE_CPU: info.type = "software"; break;
        default: info.type = "other"; break;
      }
      VkPhysicalDeviceMemoryProperties mp{};
      api->vkGetPhysicalDeviceMemoryProperties(pd, &mp);
      for (uint32_t h = 0; h < mp.memoryHeapCount; ++h)
        if (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
          info.memory_bytes = std::max<uint64_t>(info.memory_bytes, mp.memoryHeaps[h].size);
      const bool v12 = VK_API_VERSION_MAJOR(props.apiVersion) > 1 || VK_API_VERSION_MINOR(props.apiVersion) >= 2;
      uint32_t qn = 0;
      api->vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, nullptr);
      std::vector<VkQueueFamilyProperties> qf(qn);
      api->vkGetPhysicalDeviceQueueFamilyProperties(pd, &qn, qf.data());
      uint32_t family = UINT32_MAX;
      for (uint32_t q = 0; q < qn; ++q)
        if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) {
          // prefer a compute queue that is not also the graphics queue only when it exists; either works
          if (family == UINT32_MAX) family = q;
        }
      d.queue_family.push_back(family);
      if (v12) {
        VkPhysicalDeviceDriverProperties drv{};
        drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
        VkPhysicalDeviceProperties2 p2{};
        p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
        p2.pNext = &drv;
        api->vkGetPhysicalDeviceProperties2(pd, &p2);
        info.driver = std::string(drv.driverName) + (drv.driverInfo[0] ? " " + std::string(drv.driverInfo) : "");
        const DeviceFeatures have(*api, pd);
        const VkPhysicalDeviceVulkan12Features& f12 = have.f12;
        info.fp16 = f12.shaderFloat16;
        info.int8 = f12.shaderInt8;
        info.cooperative_matrix = has_extension(*api, pd, "VK_KHR_cooperative_matrix") ||
                                  has_extension(*api, pd, "VK_NV_cooperative_matrix");
        info.cooperative_matrix_kernel = coopmat_pending(coopmat_plan(*api, pd));
        if (!f12.bufferDeviceAddress) {
          info.usable = false;
          info.unusable_reason = "the driver lacks bufferDeviceAddress, which sdnode's Vulkan kernels need";
        }
      } else {
        char b[64];
        std::snprintf(b, sizeof b, "Vulkan %u.%u", VK_API_VERSION_MAJOR(props.apiVersion),
                      VK_API_VERSION_MINOR(props.apiVersion));
        info.driver = b;
        info.usable = false;
        info.unusable_reason = std::string("the driver offers ") + b + "; sdnode needs Vulkan 1.2";
      }
      if (info.usable && family == UINT32_MAX) {
        info.usable = false;
        info.unusable_reason = "no compute queue";
      }
      if (!info.usable) info.cooperative_matrix_kernel = "not used: the device is unusable";
      d.infos.push_back(info);
    }
  });
  return d;
}

// ---------------------------------------------------------------------------------------------------------
// The device state shared by a backend instance and its buffers (buffers may outlive the backend object).
// ---------------------------------------------------------------------------------------------------------
struct Alloc {
  VkBuffer buf = VK_NULL_HANDLE;
  VkDeviceMemory mem = VK_NULL_HANDLE;
  VkDeviceAddress addr = 0;
  size_t size = 0;
  void* mapped = nullptr;
};

struct Push {
  uint32_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // four device addresses (low, high)
  uint32_t u[24] = {};
  void addr(int i, uint64_t v) {
    a[2 * i] = (uint32_t)v;
    a[2 * i + 1] = (uint32_t)(v >> 32);
  }
  void f(int i, float v) { std::memcpy(&u[i], &v, 4); }
};
static_assert(sizeof(Push) == 128, "push constants are 128 bytes");

class StreamBuf;

class Core {
 public:
  Core(int index, const BackendOptions& options) : api_(*discovery().api), index_(index), options_(options) {
    Discovery& disc = discovery();
    pd_ = disc.phys[index];
    info_ = disc.infos[index];
    family_ = disc.queue_family[index];
    api_.vkGetPhysicalDeviceProperties(pd_, &props_);
    api_.vkGetPhysicalDeviceMemoryProperties(pd_, &memprops_);
    {
      VkPhysicalDeviceMaintenance3Properties m3{};
      m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
      subgroup_props_ = VkPhysicalDeviceSubgroupProperties{};
      subgroup_props_.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
      m3.pNext = &subgroup_props_;
      VkPhysicalDeviceProperties2 p2{};
      p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
      p2.pNext = &m3;
      api_.vkGetPhysicalDeviceProperties2(pd_, &p2);
      subgroup_props_.pNext = nullptr;
      max_alloc_ = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 30);
    }
    if (props_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) max_groups_1d_ = 32;
    // GEMM kernel variant: the register-blocked one on CPU implementations (lavapipe), the shared-memory tiled one
    // on GPUs; SDN_VULKAN_KERNELS=blocked|tiled forces one (tests run both on every device).
    blocked_kernels_ = props_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    if (const char* v = std::getenv("SDN_VULKAN_KERNELS")) {
      if (std::strcmp(v, "blocked") == 0) blocked_kernels_ = true;
      else if (std::strcmp(v, "tiled") == 0) blocked_kernels_ = false;
    }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci{};
    qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qci.queueFamilyIndex = family_;
    qci.queueCount = 1;
    qci.pQueuePriorities = &prio;
    const DeviceFeatures have(api_, pd_);
    int64_ = have.f2.features.shaderInt64 == VK_TRUE;
    if (!int64_) blocked_kernels_ = false;  // the register-blocked kernels load 64 bits at a time
    coopmat_ = coopmat_plan(api_, pd_);
    choose_features(have);
    VkPhysicalDeviceVulkan11Features f11{};
    f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
    f11.storageBuffer16BitAccess = s16_ ? VK_TRUE : VK_FALSE;
    VkPhysicalDeviceVulkan12Features f12{};
    f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
    f12.pNext = &f11;
    f12.bufferDeviceAddress = VK_TRUE;
    f12.storageBuffer8BitAccess = s8_ ? VK_TRUE : VK_FALSE;
    VkPhysicalDeviceFeatures2 features2{};
    features2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    features2.pNext = &f12;
    features2.features.shaderInt64 = int64_ ? VK_TRUE : VK_FALSE;
    std::vector<const char*> exts;
    if (has_extension(api_, pd_, "VK_KHR_portability_subset")) exts.push_back("VK_KHR_portability_subset");
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{};
    const VkPhysicalDeviceVulkan12Features f12_plain = f12;
    const std::vector<const char*> exts_plain = exts;
    coopmat_device_features(coopmat_, f12, cmf, exts);
    VkDeviceCreateInfo dci{};
    dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    dci.pNext = &features2;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    dci.enabledExtensionCount = (uint32_t)exts.size();
    dci.ppEnabledExtensionNames = exts.data();
    VkResult created = api_.vkCreateDevice(pd_, &dci, nullptr, &dev_);
    if (created != VK_SUCCESS && exts.size() != exts_plain.size()) {
      // the cooperative-matrix extension or its features made device creation fail: without them, the plain kernels
      coopmat_.candidate = false;
      coopmat_.why = "creating the device with VK_NV_cooperative_matrix failed (" + vk::result_name(created) + ")";
      f12 = f12_plain;
      exts = exts_plain;
      dci.enabledExtensionCount = (uint32_t)exts.size();
      dci.ppEnabledExtensionNames = exts.data();
      dev_ = VK_NULL_HANDLE;
      created = api_.vkCreateDevice(pd_, &dci, nullptr, &dev_);
    }
    check(created, "creating the device");
    api_.vkGetDeviceQueue(dev_, family_, 0, &queue_);
    VkCommandPoolCreateInfo pci{};
    pci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = family_;
    check(api_.vkCreateCommandPool(dev_, &pci, nullptr, &cmd_pool_), "creating a command pool");
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Push)};
    VkPipelineLayoutCreateInfo lci{};
    lci.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    lci.pushConstantRangeCount = 1;
    lci.pPushConstantRanges = &range;
    check(api_.vkCreatePipelineLayout(dev_, &lci, nullptr, &layout_), "creating the pipeline layout");
    for (Slot& s : slots_) {
      VkCommandBufferAllocateInfo ai{};
      ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
      ai.commandPool = cmd_pool_;
      ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
      ai.commandBufferCount = 1;
      check(api_.vkAllocateCommandBuffers(dev_, &ai, &s.cb), "allocating a command buffer");
      VkFenceCreateInfo fci{};
      fci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
      check(api_.vkCreateFence(dev_, &fci, nullptr, &s.fence), "creating a fence");
      s.staging = allocate(kStagingBytes, true, "staging memory");
    }
  }

  // Device-feature kernel variants (see the notes at the top): what the device offers, narrowed by
  // SDN_VULKAN_FEATURES (a comma-separated subset of subgroup,f16,int8, or "none"; unset: every one offered).
  void choose_features(const DeviceFeatures& have) {
    const VkPhysicalDeviceSubgroupProperties& sg = subgroup_props_;
    const VkPhysicalDeviceVulkan11Features& f11 = have.f11;
    const VkPhysicalDeviceVulkan12Features& f12 = have.f12;
    const VkSubgroupFeatureFlags need = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    subgroup_size_ = sg.subgroupSize;
    bool subgroup = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) && (sg.supportedOperations & need) == need &&
                    sg.subgroupSize >= 1 && sg.subgroupSize <= 256 && (256 % sg.subgroupSize) == 0;
    bool s16 = f11.storageBuffer16BitAccess == VK_TRUE;
    bool s8 = s16 && f12.storageBuffer8BitAccess == VK_TRUE;
    if (const char* v = std::getenv("SDN_VULKAN_FEATURES")) {
      bool want_sg = false, want_16 = false, want_8 = false;
      std::string list = v, word;
      for (size_t i = 0; i <= list.size(); ++i) {
        if (i < list.size() && list[i] != ',') {
          if (list[i] != ' ') word += list[i];
          continue;
        }
        if (word == "subgroup") want_sg = true;
        else if (word == "f16") want_16 = true;
        else if (word == "int8") want_8 = true;
        else if (word == "all") want_sg = want_16 = want_8 = true;
        else if (!word.empty() && word != "none")
          std::fprintf(stderr, "sdnode: SDN_VULKAN_FEATURES: unknown feature '%s' ignored (known: subgroup, f16, "
                               "int8, all, none)\n", word.c_str());
        word.clear();
      }
      subgroup = subgroup && want_sg;
      s16 = s16 && (want_16 || want_8);  // int8 loads read the f16 block scales as 16-bit values too
      s8 = s8 && want_8;
      f16_weights_ = want_16;
    } else if (props_.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
      // CPU devices (lavapipe, Mesa 22.3): 16- and 8-bit loads made the GEMM kernels slower (linear f16 0.6x,
      // q8_0 0.75x per CPU-second: llvmpipe splits narrow loads into per-lane scalar loops), so they keep the
      // 32/64-bit loads; the subgroup reductions are faster there (norm 1.9-2.6x, softmax 3.4x wall-clock)
      s16 = s8 = false;
      f16_weights_ = false;
    } else {
      f16_weights_ = true;
    }
    subgroup_ = subgroup;
    s16_ = s16;
    s8_ = s8;
    f16_weights_ = f16_weights_ && s16_;
  }

  // The kernel variants in use, for debug output and the op harness's labels.
  std::string kernels_description() const {
    std::string d = blocked_kernels_ ? "register-blocked GEMM/attention" : "tiled GEMM/attention";
    d += subgroup_ ? ", subgroup reductions (size " + std::to_string(subgroup_size_) + ")" : ", shared-memory reductions";
    d += f16_weights_ ? ", f16 weights as float16_t" : ", f16 weights unpacked from words";
    d += s8_ ? ", quantized weights as int8/uint8 + float16_t scales" : ", quantized weights unpacked from words";
    return d;
  }

  // Module suffix of the weight-reading kernels for weight type t (see CMakeLists.txt: *_s16, *_s8 flavours).
  const char* weight_flavour(DType t) const {
    if ((t == DType::F16 || t == DType::BF16) && f16_weights_) return "_s16";
    if (dtype_traits(t).quantized && s8_) return "_s8";
    return "";
  }

  ~Core() {
    if (!dev_) return;
    api_.vkDeviceWaitIdle(dev_);
    for (Slot& s : slots_) {
      if (s.fence) api_.vkDestroyFence(dev_, s.fence, nullptr);
      free_alloc(s.staging);
    }
    for (auto& kv : free_)
      for (Alloc& a : kv.second) free_alloc(a);
    free_alloc(area_);
    for (auto& kv : pipelines_) api_.vkDestroyPipeline(dev_, kv.second, nullptr);
    if (layout_) api_.vkDestroyPipelineLayout(dev_, layout_, nullptr);
    if (cmd_pool_) api_.vkDestroyCommandPool(dev_, cmd_pool_, nullptr);
    api_.vkDestroyDevice(dev_, nullptr);
  }

  void check(VkResult r, const std::string& what) {
    if (r == VK_SUCCESS) return;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
      throw_error(ErrorCode::OutOfMemory, info_.id + " (" + info_.name + ") ran out of memory " + what +
                                              ": use a smaller image size, vaeTiling, a lower vramBudget, or device 'cpu'");
    throw_error(ErrorCode::Internal, info_.id + " (" + info_.name + "): " + what + " failed with " +
                                         vk::result_name(r) + " (use device 'cpu' to run without Vulkan)");
  }

  // ---- memory ----
  int memory_type(uint32_t bits, bool host) const {
    const VkMemoryPropertyFlags want =
        host ? (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
             : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
    for (uint32_t i = 0; i < memprops_.memoryTypeCount; ++i)
      if ((bits & (1u << i)) && (memprops_.memoryTypes[i].propertyFlags & want) == want) return (int)i;
    if (!host)
      for (uint32_t i = 0; i < memprops_.memoryTypeCount; ++i)
        if (bits & (1u << i)) return (int)i;
    return -1;
  }

  // One buffer with its own memory (device-local, or host-visible and mapped for staging). Throws OutOfMemory.
  Alloc allocate(size_t bytes, bool host, const char* what) {
    if (bytes > max_alloc_)
      throw_error(ErrorCode::OutOfMemory,
                  info_.id + " (" + info_.name + "): " + std::string(what) + " of " + mib(bytes) +
                      " is larger than the device's largest allocation (" + mib(max_alloc_) +
                      "): use a smaller image size, vaeTiling, or device 'cpu'");
    Alloc a;
    a.size = bytes;
    VkBufferCreateInfo bci{};
    bci.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bci.size = bytes;
    bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                (host ? 0 : (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT));
    bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    check(api_.vkCreateBuffer(dev_, &bci, nullptr, &a.buf), "creating a buffer");
    VkMemoryRequirements req{};
    api_.vkGetBufferMemoryRequirements(dev_, a.buf, &req);
    int type = memory_type(req.memoryTypeBits, host);
    if (type < 0) {
      api_.vkDestroyBuffer(dev_, a.buf, nullptr);
      throw_error(ErrorCode::Internal, info_.id + ": no suitable memory type (use device 'cpu')");
    }
    VkMemoryAllocateFlagsInfo flags{};
    flags.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO;
    flags.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
    VkMemoryAllocateInfo mai{};
    mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    mai.pNext = host ? nullptr : &flags;
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = (uint32_t)type;
    VkResult r = api_.vkAllocateMemory(dev_, &mai, nullptr, &a.mem);
    if (r != VK_SUCCESS) {
      api_.vkDestroyBuffer(dev_, a.buf, nullptr);
      if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
        throw_error(ErrorCode::OutOfMemory,
                    info_.id + " (" + info_.name + ") is out of memory allocating " + mib(bytes) + " for " + what +
                        " (" + mib(in_use_) + " of activations and " + mib(weights_) +
                        " of weights in use): use a smaller image size, vaeTiling, a vramBudget that keeps some "
                        "weights in host memory, or device 'cpu'");
      check(r, "allocating memory");
    }
    api_.vkBindBufferMemory(dev_, a.buf, a.mem, 0);
    if (host) {
      check(api_.vkMapMemory(dev_, a.mem, 0, VK_WHOLE_SIZE, 0, &a.mapped), "mapping staging memory");
    } else {
      VkBufferDeviceAddressInfo bai{};
      bai.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO;
      bai.buffer = a.buf;
      a.addr = api_.vkGetBufferDeviceAddress(dev_, &bai);
    }
    return a;
  }

  void free_alloc(Alloc& a) {
    if (a.mapped) api_.vkUnmapMemory(dev_, a.mem);
    if (a.buf) api_.vkDestroyBuffer(dev_, a.buf, nullptr);
    if (a.mem) api_.vkFreeMemory(dev_, a.mem, nullptr);
    a = Alloc();
  }

  static size_t size_class(size_t bytes) {
    if (bytes <= 4096) return 4096;
    // 8 classes per power of two (<= 12.5 % waste)
    size_t p = 1;
    while (p * 2 <= bytes) p *= 2;
    size_t step = p / 8;
    return (bytes + step - 1) / step * step;
  }

  // Activation memory from the pool.
  Alloc acquire(size_t bytes) {
    size_t cls = size_class(bytes);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        Alloc a = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        in_use_ += cls;
        peak_ = std::max(peak_, in_use_);
        return a;
      }
    }
    Alloc a;
    try {
      a = allocate(cls, false, "an activation");
    } catch (const Error& e) {
      if (e.code() != ErrorCode::OutOfMemory || cls > max_alloc_) throw;
      trim();  // give cached blocks back and try once more
      a = allocate(cls, false, "an activation");
    }
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ += cls;
    peak_ = std::max(peak_, in_use_);
    return a;
  }

  void release(const Alloc& a) {
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ -= a.size;
    cached_ += a.size;
    free_[a.size].push_back(a);
  }

  void trim() {
    synchronize();
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& kv : free_)
      for (Alloc& a : kv.second) free_alloc(a);
    free_.clear();
    cached_ = 0;
  }

  // ---- command batching ----
  struct Slot {
    VkCommandBuffer cb = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    bool pending = false;
    Alloc staging;
    size_t used = 0;
  };

  VkCommandBuffer cmd() {
    Slot& s = slots_[cur_];
    if (!recording_) {
      if (s.pending) wait_slot(s);
      s.used = 0;
      api_.vkResetCommandBuffer(s.cb, 0);
      VkCommandBufferBeginInfo bi{};
      bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
      bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
      check(api_.vkBeginCommandBuffer(s.cb, &bi), "recording commands");
      recording_ = true;
      ops_ = 0;
      barrier(s.cb);  // orders this batch after everything submitted before it
    }
    return s.cb;
  }

  void wait_slot(Slot& s) {
    VkResult r = api_.vkWaitForFences(dev_, 1, &s.fence, VK_TRUE, UINT64_MAX);
    s.pending = false;
    api_.vkResetFences(dev_, 1, &s.fence);
    check(r, "waiting for the device");
  }

  void barrier(VkCommandBuffer cb, bool to_host = false) {
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = to_host ? VK_ACCESS_HOST_READ_BIT
                               : (VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                                  VK_ACCESS_TRANSFER_WRITE_BIT);
    const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    api_.vkCmdPipelineBarrier(cb, stages, to_host ? VK_PIPELINE_STAGE_HOST_BIT : stages, 0, 1, &mb, 0, nullptr, 0,
                              nullptr);
  }

  // Ends and submits the batch being recorded (if any); with wait, waits for every submitted batch.
  void submit(bool wait) {
    if (recording_) {
      Slot& s = slots_[cur_];
      barrier(s.cb, true);
      check(api_.vkEndCommandBuffer(s.cb), "recording commands");
      VkSubmitInfo si{};
      si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
      si.commandBufferCount = 1;
      si.pCommandBuffers = &s.cb;
      recording_ = false;
      check(api_.vkQueueSubmit(queue_, 1, &si, s.fence), "submitting work");
      s.pending = true;
      cur_ = (cur_ + 1) % kSlots;
    }
    if (wait)
      for (Slot& s : slots_)
        if (s.pending) wait_slot(s);
  }
  void synchronize() { submit(true); }

  // The pipeline of shader `name`, with specialization constant 0 set to `spec` when spec >= 0.
  VkPipeline pipeline(const std::string& name, int spec = -1) {
    const std::string key = spec >= 0 ? name + "#" + std::to_string(spec) : name;
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;
    size_t n = 0;
    const uint32_t* words = vk_spirv::find(name.c_str(), &n);
    if (!words) throw_error(ErrorCode::Internal, "vulkan: shader " + name + " is not compiled in");
    VkShaderModuleCreateInfo sci{};
    sci.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    sci.codeSize = n * 4;
    sci.pCode = words;
    VkShaderModule mod = VK_NULL_HANDLE;
    check(api_.vkCreateShaderModule(dev_, &sci, nullptr, &mod), "loading shader " + name);
    VkComputePipelineCreateInfo cpi{};
    cpi.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    cpi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpi.stage.module = mod;
    cpi.stage.pName = "main";
    cpi.layout = layout_;
    const uint32_t spec_value = (uint32_t)spec;
    VkSpecializationMapEntry entry{0, 0, sizeof(uint32_t)};
    VkSpecializationInfo si{1, &entry, sizeof(uint32_t), &spec_value};
    if (spec >= 0) cpi.stage.pSpecializationInfo = &si;
    VkPipeline p = VK_NULL_HANDLE;
    VkResult r = api_.vkCreateComputePipelines(dev_, VK_NULL_HANDLE, 1, &cpi, nullptr, &p);
    api_.vkDestroyShaderModule(dev_, mod, nullptr);
    check(r, "building pipeline " + name);
    pipelines_[key] = p;
    return p;
  }

  void dispatch(const std::string& shader, const Push& pc, uint32_t gx, uint32_t gy = 1, uint32_t gz = 1,
                int spec = -1) {
    PinScope pins(*this);  // the streamed weights pinned for this operation are released however it ends
    if (gx == 0 || gy == 0 || gz == 0) return;
    if (gx > kMaxGroups || gy > kMaxGroups || gz > kMaxGroups)
      throw_error(ErrorCode::OutOfMemory, info_.id + ": " + shader +
                                              " needs more workgroups than a dispatch allows: use a smaller image "
                                              "size, vaeTiling, or device 'cpu'");
    VkPipeline p = pipeline(shader, spec);
    if (!pins_.empty()) prefetch();  // streamed weights: copy the next ones while this operation runs
    VkCommandBuffer cb = cmd();
    api_.vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    api_.vkCmdPushConstants(cb, layout_, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Push), &pc);
    api_.vkCmdDispatch(cb, gx, gy, gz);
    barrier(cb);
    if (++ops_ >= kOpsPerBatch) submit(false);
  }

  // 1-D work of n items: workgroups of 256 invocations running grid-stride loops (at most max_groups_1d_
  // workgroups: 32 on a CPU device, whose per-workgroup cost is high, 1024 elsewhere).
  void dispatch1d(const std::string& shader, const Push& pc, uint64_t n, int spec = -1) {
    uint64_t groups = (n + 255) / 256;
    if (groups == 0) return;
    dispatch(shader, pc, (uint32_t)std::min<uint64_t>(groups, max_groups_1d_), 1, 1, spec);
  }

  // Copies host bytes into (buf, offset), in order with the recorded work (followed by a barrier unless
  // barrier_after is false: a prefetch copy that the next dispatch does not read).
  void upload(VkBuffer dst, size_t offset, const void* src, size_t bytes, bool barrier_after = true) {
    const char* p = static_cast<const char*>(src);
    while (bytes > 0) {
      VkCommandBuffer cb = cmd();
      Slot& s = slots_[cur_];
      size_t avail = kStagingBytes - s.used;
      if (avail < std::min<size_t>(bytes, 1 << 20)) {
        submit(false);
        continue;
      }
      size_t c = std::min(bytes, avail);
      std::memcpy(static_cast<char*>(s.staging.mapped) + s.used, p, c);
      VkBufferCopy region{s.used, offset, c};
      api_.vkCmdCopyBuffer(cb, s.staging.buf, dst, 1, &region);
      s.used += (c + 255) / 256 * 256;
      p += c;
      offset += c;
      bytes -= c;
      if (++ops_ >= kOpsPerBatch) {
        barrier(cb);
        submit(false);
      }
    }
    if (recording_ && barrier_after) barrier(slots_[cur_].cb);
  }

  // ---- weight streaming (vramBudget; defined after StreamBuf) ----
  // Bytes of the streaming area: a quarter of the budget (0 without a budget).
  size_t stream_area_bytes() const { return options_.vram_budget ? (size_t)(options_.vram_budget / 4) / 256 * 256 : 0; }
  // Device address of a streamed weight for the operation being recorded: copies it into the streaming area if it
  // is not there, and pins it until the operation's dispatch is recorded.
  uint64_t stream_addr(const std::shared_ptr<StreamBuf>& sb);
  void stream_forget(StreamBuf* sb);  // a streamed weight is being destroyed

  struct PinScope {  // clears pins_ when an operation's dispatch is recorded (or fails)
    Core& c;
    explicit PinScope(Core& c) : c(c) {}
    ~PinScope() { c.pins_.clear(); }
  };
  mutable std::mutex stream_mu_;  // the fields below
  Alloc area_;                    // the streaming area (device-local), allocated at the first streamed weight
  size_t area_head_ = 0;          // where the ring places the next copy
  std::map<size_t, StreamBuf*> area_map_;  // offset -> streamed weight held there
  std::vector<StreamBuf*> pins_;           // in the area for the operation being recorded (and its prefetches)
  std::weak_ptr<StreamBuf> last_streamed_; // the streamed weight used last (to learn the order)
  int64_t live_streamed_ = 0;              // streamed weights alive
  uint64_t host_weights_ = 0;              // bytes of weights kept in host memory
  uint64_t streamed_ = 0, stream_copies_ = 0, prefetched_ = 0;  // bytes copied into the area; copies; of which prefetches

 private:
  bool stream_place(StreamBuf* sb, bool barrier_after);
  void prefetch();

 public:

  // Copies (buf, offset) to host memory, waiting for the work that produces it.
  void download(VkBuffer src, size_t offset, void* dst, size_t bytes) {
    char* p = static_cast<char*>(dst);
    while (bytes > 0) {
      VkCommandBuffer cb = cmd();
      Slot& s = slots_[cur_];
      size_t avail = kStagingBytes - s.used;
      if (avail < std::min<size_t>(bytes, 1 << 20)) {
        submit(false);
        continue;
      }
      size_t c = std::min(bytes, avail);
      size_t at = s.used;
      VkBufferCopy region{offset, at, c};
      api_.vkCmdCopyBuffer(cb, src, s.staging.buf, 1, &region);
      s.used += (c + 255) / 256 * 256;
      submit(true);
      std::memcpy(p, static_cast<const char*>(s.staging.mapped) + at, c);
      p += c;
      offset += c;
      bytes -= c;
    }
  }

  const Api& api_;
  int index_;
  BackendOptions options_;
  DeviceInfo info_;
  VkPhysicalDevice pd_ = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties props_{};
  VkPhysicalDeviceMemoryProperties memprops_{};
  uint64_t max_alloc_ = 0;
  uint32_t max_groups_1d_ = 1024;
  bool blocked_kernels_ = false;  // matmul_rb.comp / attention_rb.comp instead of matmul.comp / attention.comp
  bool int64_ = false;            // shaderInt64 enabled
  CoopmatPlan coopmat_;           // cooperative-matrix GEMM: whether the device can run it (coopmat_plan)
  bool coopmat_on_ = false;       // linear/conv2d use it (set by VulkanBackend::coopmat_selfcheck)
  bool subgroup_ = false;         // norm_sg / softmax_sg (subgroup BASIC + ARITHMETIC in compute)
  uint32_t subgroup_size_ = 0;
  VkPhysicalDeviceSubgroupProperties subgroup_props_{};
  bool s16_ = false;              // storageBuffer16BitAccess enabled
  bool s8_ = false;               // storageBuffer8BitAccess enabled (with s16_): quantized *_s8 modules
  bool f16_weights_ = false;      // f16/bf16 weights through the *_s16 modules
  uint32_t family_ = 0;
  VkDevice dev_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkCommandPool cmd_pool_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  std::unordered_map<std::string, VkPipeline> pipelines_;
  Slot slots_[kSlots];
  int cur_ = 0;
  bool recording_ = false;
  int ops_ = 0;

  mutable std::mutex mu_;
  std::map<size_t, std::vector<Alloc>> free_;  // size class -> cached blocks
  uint64_t in_use_ = 0, cached_ = 0, peak_ = 0, weights_ = 0;
  uint64_t peak_weights_ = 0;  // peak of weights_ + the streaming area
  void note_weights() { peak_weights_ = std::max<uint64_t>(peak_weights_, weights_ + area_.size); }  // under mu_
};

// ---------------------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------------------
class VkBuffer_ final : public DeviceBuffer {
 public:
  VkBuffer_(Backend& owner, std::shared_ptr<Core> core, Alloc a, bool pooled)
      : owner_(owner), core_(std::move(core)), a_(a), pooled_(pooled) {}
  ~VkBuffer_() override {
    if (pooled_) {
      core_->release(a_);
    } else {
      // weight memory: the device may still read it in submitted work
      try {
        core_->synchronize();
      } catch (...) {
      }
      {
        std::lock_guard<std::mutex> lk(core_->mu_);
        core_->weights_ -= std::min<uint64_t>(core_->weights_, used_);
      }
      core_->free_alloc(a_);
    }
  }
  Backend& backend() const override { return owner_; }
  size_t size() const override { return a_.size; }
  const Alloc& alloc() const { return a_; }
  const Core* core() const { return core_.get(); }
  uint64_t used_ = 0;  // bytes of weights placed in this chunk

 private:
  Backend& owner_;
  std::shared_ptr<Core> core_;
  Alloc a_;
  bool pooled_;
};

// A weight kept in host memory under vramBudget and streamed into the streaming area when an operation uses it.
class StreamBuf final : public DeviceBuffer {
 public:
  StreamBuf(Backend& owner, std::shared_ptr<Core> core, Tensor host, size_t bytes)
      : host(std::move(host)), bytes(bytes), owner_(owner), core_(std::move(core)) {
    std::lock_guard<std::mutex> lk(core_->stream_mu_);
    ++core_->live_streamed_;
    core_->host_weights_ += bytes;
  }
  ~StreamBuf() override { core_->stream_forget(this); }
  Backend& backend() const override { return owner_; }
  size_t size() const override { return bytes; }
  const Core* core() const { return core_.get(); }

  const Tensor host;                   // the weight as stored (its owner keeps the memory map or copy alive)
  const size_t bytes;                  // bytes copied to the device
  size_t need() const { return (std::max<size_t>(bytes, 4) + 255) / 256 * 256; }
  int64_t area_off = -1;               // where it is in the streaming area (-1: not there)
  std::weak_ptr<StreamBuf> next;       // the streamed weight used after this one the last time (prefetch)

 private:
  Backend& owner_;
  std::shared_ptr<Core> core_;
};

// Finds room for sb in the streaming area (not overlapping a pinned region), evicts what was there, and records
// the copy. Returns false when the pinned regions leave no room.
bool Core::stream_place(StreamBuf* sb, bool barrier_after) {
  const size_t need = sb->need();
  if (!area_.buf) {
    area_ = allocate(stream_area_bytes(), false, "the weight streaming area (a quarter of vramBudget)");
    std::lock_guard<std::mutex> lk(mu_);
    note_weights();
  }
  const size_t size = area_.size;
  auto free_of_pins = [&](size_t off) {
    if (off + need > size) return false;
    for (StreamBuf* p : pins_)
      if (off < (size_t)p->area_off + p->need() && (size_t)p->area_off < off + need) return false;
    return true;
  };
  int64_t at = -1;
  std::vector<size_t> cand = {area_head_, 0};
  for (StreamBuf* p : pins_) cand.push_back((size_t)p->area_off + p->need());
  for (size_t c : cand)
    if (free_of_pins(c)) {
      at = (int64_t)c;
      break;
    }
  if (at < 0) return false;
  {
    std::lock_guard<std::mutex> lk(stream_mu_);
    // evict every cached weight overlapping [at, at + need)
    auto it = area_map_.lower_bound((size_t)at);
    if (it != area_map_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second->need() > (size_t)at) it = prev;
    }
    while (it != area_map_.end() && it->first < (size_t)at + need) {
      it->second->area_off = -1;
      it = area_map_.erase(it);
    }
    sb->area_off = at;
    area_map_[(size_t)at] = sb;
    streamed_ += sb->bytes;
    ++stream_copies_;
    if (!barrier_after) ++prefetched_;
  }
  area_head_ = (size_t)at + need;
  if (area_head_ >= size) area_head_ = 0;
  if (sb->bytes) upload(area_.buf, (size_t)at, sb->host.data, sb->bytes, barrier_after);
  return true;
}

uint64_t Core::stream_addr(const std::shared_ptr<StreamBuf>& sb) {
  // learn the order: the weight used before this one is followed by this one
  if (auto last = last_streamed_.lock())
    if (last != sb) last->next = sb;
  last_streamed_ = sb;
  bool placed = sb->area_off >= 0;
  try {
    placed = placed || stream_place(sb.get(), true);
  } catch (...) {
    pins_.clear();  // the operation fails: the next one starts with nothing pinned
    throw;
  }
  if (!placed) {
    pins_.clear();
    throw_error(ErrorCode::OutOfMemory,
                info_.id + " (" + info_.name + "): the weights of one operation do not fit the weight streaming " +
                    "area (" + mib(area_.size) + ", a quarter of vramBudget): raise vramBudget");
  }
  if (std::find(pins_.begin(), pins_.end(), sb.get()) == pins_.end()) pins_.push_back(sb.get());
  return area_.addr + (uint64_t)sb->area_off;
}

// Copies the streamed weights that followed the current operation's last one the previous time (at most eight,
// up to half the area), without a barrier before the dispatch that comes next.
void Core::prefetch() {
  std::shared_ptr<StreamBuf> p = pins_.back()->next.lock();
  size_t bytes = 0;
  for (int n = 0; p && n < 8 && bytes < area_.size / 2; ++n) {
    if (std::find(pins_.begin(), pins_.end(), p.get()) != pins_.end()) break;  // a cycle within this operation
    if (p->area_off < 0 && !stream_place(p.get(), false)) break;               // no room next to the pinned ones
    pins_.push_back(p.get());  // keep it while the rest of this prefetch is placed
    bytes += p->need();
    p = p->next.lock();
  }
}

void Core::stream_forget(StreamBuf* sb) {
  bool last = false;
  {
    std::lock_guard<std::mutex> lk(stream_mu_);
    if (sb->area_off >= 0) {
      auto it = area_map_.find((size_t)sb->area_off);
      if (it != area_map_.end() && it->second == sb) area_map_.erase(it);
    }
    pins_.erase(std::remove(pins_.begin(), pins_.end(), sb), pins_.end());
    host_weights_ -= std::min<uint64_t>(host_weights_, sb->bytes);
    last = --live_streamed_ == 0;
  }
  if (last && area_.buf) {  // the last streamed weight is gone: give the area back (the device may still read it)
    try {
      synchronize();
    } catch (...) {
    }
    free_alloc(area_);
    area_head_ = 0;
  }
}

int64_t prod(const int64_t* s, int a, int b) {
  int64_t p = 1;
  for (int i = a; i < b; ++i) p *= s[i];
  return p;
}

bool is_device_weight_type(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0: case DType::Q4_1:
    case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

// Bytes of a contiguous weight: rows along dimension 0 (a quantized conv weight [OC, C, KH, KW] has rows of
// C*KH*KW elements, so Tensor::nbytes(), which takes rows along the last dimension, does not apply).
size_t weight_bytes(const Tensor& t) {
  if (!dtype_traits(t.dtype).quantized || t.ndim < 2) return t.nbytes();
  const int64_t rows = t.shape[0], cols = rows ? t.numel() / rows : 0;
  return (size_t)rows * dtype_row_bytes(t.dtype, cols);
}

std::string type_suffix(DType t) {
  std::string s = dtype_name(t);
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------------------
class VulkanBackend final : public Backend {
 public:
  VulkanBackend(int index, const BackendOptions& options)
      : core_(std::make_shared<Core>(index, options)), cpu_(make_cpu_backend(options)) {
    const char* dbg = std::getenv("SDN_DEBUG");
    if (dbg && *dbg && *dbg != '0')
      std::fprintf(stderr, "sdnode: %s (%s) kernels: %s\n", core_->info_.id.c_str(), core_->info_.name.c_str(),
                   core_->kernels_description().c_str());
    coopmat_selfcheck();
  }
  ~VulkanBackend() override {
    try {
      core_->synchronize();
    } catch (...) {
    }
    const char* dbg = std::getenv("SDN_DEBUG");
    if (core_->options_.vram_budget && dbg && *dbg && *dbg != '0') {
      const MemoryStats m = memory_stats();
      std::fprintf(stderr,
                   "sdnode: %s vramBudget %llu bytes: peak device weights %llu bytes (streaming area %llu); "
                   "streamed %llu bytes in %llu copies (%llu prefetched)\n",
                   core_->info_.id.c_str(), (unsigned long long)core_->options_.vram_budget,
                   (unsigned long long)core_->peak_weights_, (unsigned long long)core_->stream_area_bytes(),
                   (unsigned long long)m.streamed, (unsigned long long)m.stream_copies,
                   (unsigned long long)m.prefetched);
    }
  }

  const char* name() const override { return "vulkan"; }
  DeviceInfo device_info() const override {
    DeviceInfo d = core_->info_;
    d.kernels = core_->kernels_description();
    return d;
  }
  bool supports(Op op, DType w) const override {
    if (op == Op::Linear || op == Op::Conv2d || op == Op::GetRows) return is_device_weight_type(w);
    return w == DType::F32;
  }

  // ---- memory ----
  Tensor empty(const std::vector<int64_t>& shape, DType dtype) override {
    Tensor t;
    t.dtype = dtype;
    t.ndim = (int)shape.size();
    if (t.ndim > kMaxDims) bad("vulkan empty", "at most 4 dimensions");
    for (int i = 0; i < t.ndim; ++i) {
      if (shape[i] < 0) bad("vulkan empty", "negative dimension");
      t.shape[i] = shape[i];
    }
    t.set_contiguous_strides();
    size_t bytes = std::max<size_t>(t.nbytes(), 4);
    t.buffer = std::make_shared<VkBuffer_>(*this, core_, core_->acquire(bytes), true);
    t.offset = 0;
    return t;
  }

  Tensor upload(const Tensor& host) override {
    if (host.on_device()) {
      own(host, "upload");
      return host;
    }
    Tensor src = host.is_contiguous() ? host : host.contiguous();
    Tensor t = empty(src.sizes(), src.dtype);
    if (src.nbytes()) core_->upload(buf(t).alloc().buf, t.offset, src.data, src.nbytes());
    return t;
  }

  Tensor to_host(const Tensor& x) override {
    if (!x.on_device()) return x;
    own(x, "to_host");
    if (auto* sb = dynamic_cast<StreamBuf*>(x.buffer.get())) return sb->host;  // a streamed weight, as stored
    Tensor h = Tensor::empty(x.sizes(), x.dtype);
    if (x.nbytes()) core_->download(buf(x).alloc().buf, x.offset, h.data, x.nbytes());
    return h;
  }

  void write(Tensor& dst, const Tensor& src) override {
    own(dst, "write");
    if (dynamic_cast<StreamBuf*>(dst.buffer.get()))
      throw_error(ErrorCode::Internal, "vulkan write: " + dst.shape_str() + " is a weight kept in host memory");
    if (src.on_device() || dst.dtype != src.dtype || dst.numel() != src.numel())
      throw_error(ErrorCode::Internal, "vulkan write: " + src.shape_str() + " into " + dst.shape_str());
    Tensor s = src.is_contiguous() ? src : src.contiguous();
    if (dst.nbytes()) core_->upload(buf(dst).alloc().buf, dst.offset, s.data, dst.nbytes());
  }

  void synchronize() override { core_->synchronize(); }
  void trim() override {
    core_->trim();
    cpu_->trim();
  }
  MemoryStats memory_stats() const override {
    std::lock_guard<std::mutex> lk(core_->mu_);
    MemoryStats m;
    m.in_use = core_->in_use_;
    m.cached = core_->cached_;
    m.peak = core_->peak_;
    m.weights = core_->weights_ + core_->area_.size;
    m.peak_weights = core_->peak_weights_;
    std::lock_guard<std::mutex> sk(core_->stream_mu_);
    m.stream_area = core_->area_.size;
    m.host_weights = core_->host_weights_;
    m.streamed = core_->streamed_;
    m.stream_copies = core_->stream_copies_;
    m.prefetched = core_->prefetched_;
    return m;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lk(core_->mu_);
    core_->peak_ = core_->in_use_;
  }

  Tensor prepare_weight(const Tensor& w) override {
    if (w.on_device()) {
      own(w, "prepare_weight");
      return w;
    }
    const DTypeTraits& tr = dtype_traits(w.dtype);
    Tensor src;
    const bool matrix = w.ndim >= 2 && tr.weight_type;
    if (!matrix) {
      src = (w.dtype == DType::F32 && w.is_contiguous()) ? w : w.to_f32();
    } else {
      if (!is_device_weight_type(w.dtype))
        throw_error(ErrorCode::Unsupported, std::string("vulkan has no kernels for ") + dtype_name(w.dtype) +
                                                " weights");
      src = (!tr.quantized && !w.is_contiguous()) ? w.contiguous() : w;
    }
    const uint64_t budget = core_->options_.vram_budget;
    if (budget) {
      // resident while the weights placed so far, this one and the streaming area fit the budget; else streamed
      const size_t bytes = weight_bytes(src), need = (std::max<size_t>(bytes, 4) + 255) / 256 * 256;
      const size_t area = core_->stream_area_bytes();
      uint64_t resident;
      {
        std::lock_guard<std::mutex> lk(core_->mu_);
        resident = core_->weights_;
      }
      if (resident + need + area > budget) {
        // a streamed weight must leave room in the area for the small vectors of its operation
        if (need > area / 4 * 3)
          throw_error(ErrorCode::Unsupported,
                      "a weight of " + mib(bytes) + " is larger than the weight streaming area allows (" +
                          mib(area / 4 * 3) + " of " + mib(area) +
                          ", a quarter of vramBudget): it stays in host memory and its operations run on the CPU; "
                          "raise vramBudget above " + mib((uint64_t)need * 16 / 3) + " to stream it");
        Tensor t;
        t.dtype = src.dtype;
        t.ndim = src.ndim;
        for (int i = 0; i < src.ndim; ++i) t.shape[i] = src.shape[i];
        t.set_contiguous_strides();
        t.buffer = std::make_shared<StreamBuf>(*this, core_, src, bytes);
        t.offset = 0;
        return t;
      }
    }
    return place_weight(src);
  }

  // ---- operations ----
  Tensor linear(const Tensor& x_in, const Tensor& w, const Tensor* b) override {
    const char* op = "linear";
    Tensor x = act(x_in, op, "x");
    if (w.ndim != 2) bad(op, "weight must be [out, in], got " + w.shape_str());
    const int64_t N = w.shape[0], K = w.shape[1];
    if (x.ndim < 1 || x.dim(-1) != K)
      bad(op, "input " + x.shape_str() + " does not match weight " + w.shape_str());
    check_vec(b, N, op, "bias");
    const int64_t M = K ? x.numel() / K : 0;
    std::vector<int64_t> os = x.sizes();
    os.back() = N;
    Tensor y = empty(os, DType::F32);
    if (y.numel() == 0) return y;
    if (K == 0) return fill_bias(y, b, N, M);
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(1, weight_addr(w, op));
    if (b) pc.addr(2, addr(*b));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)M;
    pc.u[1] = (uint32_t)N;
    pc.u[2] = (uint32_t)K;
    pc.u[3] = b ? 1 : 0;
    // fast paths of the register-blocked kernel (matmul_rb.comp): 8-byte aligned rows of x / of f16 weights
    pc.u[14] = ((K % 2 == 0 && addr(x) % 8 == 0) ? 1u : 0u) |
               ((w.dtype == DType::F16 && K % 4 == 0 && addr(w) % 8 == 0) ? 2u : 0u);
    matmul_dispatch("linear_", w.dtype, pc, M, N);
    return y;
  }

  Tensor conv2d(const Tensor& x_in, const Tensor& w, const Tensor* b, int stride, int pad) override {
    const char* op = "conv2d";
    Tensor x = act(x_in, op, "x");
    if (x.ndim != 4) bad(op, "expected x [B, C, H, W], got " + x.shape_str());
    if (w.ndim != 4) bad(op, "expected weight [OC, C, KH, KW], got " + w.shape_str());
    const int64_t B = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t OC = w.shape[0], KH = w.shape[2], KW = w.shape[3];
    if (w.shape[1] != C) bad(op, "weight " + w.shape_str() + " does not match input channels of " + x.shape_str());
    if (stride < 1 || pad < 0) bad(op, "stride must be >= 1 and pad >= 0");
    check_vec(b, OC, op, "bias");
    const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
    if (H + 2 * pad < KH || W + 2 * pad < KW) bad(op, "kernel larger than the padded input " + x.shape_str());
    Tensor y = empty({B, OC, OH, OW}, DType::F32);
    if (y.numel() == 0) return y;
    const int64_t K = C * KH * KW, M = B * OH * OW;
    if (K == 0) return fill_bias_nchw(y, b);
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(1, weight_addr(w, op));
    if (b) pc.addr(2, addr(*b));
    pc.addr(3, addr(y));
    uint32_t* u = pc.u;
    u[0] = (uint32_t)M;
    u[1] = (uint32_t)OC;
    u[2] = (uint32_t)K;
    u[3] = b ? 1 : 0;
    u[4] = (uint32_t)C;
    u[5] = (uint32_t)H;
    u[6] = (uint32_t)W;
    u[7] = (uint32_t)OH;
    u[8] = (uint32_t)OW;
    u[9] = (uint32_t)KH;
    u[10] = (uint32_t)KW;
    u[11] = (uint32_t)stride;
    u[12] = (uint32_t)pad;
    // 3x3 / stride 1 / pad 1 fast path of the register-blocked kernel (blocks of 16 pixels of one output row)
    // fast paths of the register-blocked kernel (blocks of 16 pixels, see matmul_rb.comp): 3x3 / stride 1 / pad 1
    // in row segments of `seg` pixels (16 or 8: the lengths the op harness covers), and 1x1 / stride 1 / pad 0
    const int64_t seg = std::min<int64_t>(16, OW);
    const bool x8 = addr(x) % 8 == 0, img16 = (OH * OW) % 16 == 0;
    if (KH == 3 && KW == 3 && stride == 1 && pad == 1 && (seg == 16 || seg == 8) &&
        OW % seg == 0 && img16 && W % 2 == 0 && x8)
      u[14] = 4;
    else if (KH == 1 && KW == 1 && stride == 1 && pad == 0 && C % 2 == 0 && img16 && x8)
      u[14] = 8;
    matmul_dispatch("conv_", w.dtype, pc, M, OC, u[14] == 4 ? (int)seg : 16);
    return y;
  }

  Tensor group_norm(const Tensor& x_in, int groups, float eps, const Tensor* gamma, const Tensor* beta,
                    bool silu) override {
    const char* op = "group_norm";
    Tensor x = act(x_in, op, "x");
    if (x.ndim < 2) bad(op, "expected [B, C, ...], got " + x.shape_str());
    const int64_t B = x.shape[0], C = x.shape[1];
    if (groups <= 0 || C % groups != 0)
      bad(op, "groups (" + std::to_string(groups) + ") must divide the channel count " + std::to_string(C));
    if (!(eps >= 0)) bad(op, "eps must be >= 0");
    check_vec(gamma, C, op, "gamma");
    check_vec(beta, C, op, "beta");
    Tensor y = empty(x.sizes(), DType::F32);
    if (x.numel() == 0) return y;
    const int64_t S = x.numel() / (B * C), cpg = C / groups;
    return norm(x, y, cpg * S, S, cpg, groups, B * groups, gamma, beta, silu, eps);
  }

  Tensor layer_norm(const Tensor& x_in, float eps, const Tensor* gamma, const Tensor* beta) override {
    const char* op = "layer_norm";
    Tensor x = act(x_in, op, "x");
    if (x.ndim < 1) bad(op, "expected at least one dimension");
    const int64_t C = x.dim(-1);
    check_vec(gamma, C, op, "gamma");
    check_vec(beta, C, op, "beta");
    if (!(eps >= 0)) bad(op, "eps must be >= 0");
    Tensor y = empty(x.sizes(), DType::F32);
    if (x.numel() == 0 || C == 0) return y;
    return norm(x, y, C, 1, C, 1, x.numel() / C, gamma, beta, false, eps);
  }

  Tensor softmax(const Tensor& x_in) override {
    Tensor x = act(x_in, "softmax", "x");
    if (x.ndim < 1) bad("softmax", "expected at least one dimension");
    Tensor y = empty(x.sizes(), DType::F32);
    const int64_t C = x.dim(-1);
    if (x.numel() == 0 || C == 0) return y;
    const int64_t rows = x.numel() / C;
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)C;
    pc.u[1] = (uint32_t)rows;
    rows_dispatch(core_->subgroup_ ? "softmax_sg" : "softmax", pc, rows);
    return y;
  }

  Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int heads, bool causal) override {
    const char* op = "attention";
    Tensor q = act(q_in, op, "q"), k = act(k_in, op, "k"), v = act(v_in, op, "v");
    if (q.ndim != 3 || k.ndim != 3 || v.ndim != 3)
      bad(op, "expected q [B, Tq, H*D], k/v [B, Tk, H*D]; got " + q.shape_str() + ", " + k.shape_str() + ", " +
                  v.shape_str());
    const int64_t B = q.shape[0], Tq = q.shape[1], HD = q.shape[2], Tk = k.shape[1];
    if (k.shape[0] != B || v.shape[0] != B || v.shape[1] != Tk || k.shape[2] != HD || v.shape[2] != HD)
      bad(op, "shapes do not match: q " + q.shape_str() + ", k " + k.shape_str() + ", v " + v.shape_str());
    if (heads <= 0 || HD % heads != 0)
      bad(op, "heads (" + std::to_string(heads) + ") must divide the feature size " + std::to_string(HD));
    if (Tk == 0 && Tq > 0) bad(op, "no keys (Tk = 0)");
    const int64_t D = HD / heads;
    const bool rb = core_->blocked_kernels_ && (D == 40 || D == 64 || D == 80 || D == 160) &&
                    ((addr(q) | addr(k) | addr(v)) % 8) == 0;
    // Heads up to 256 wide: attention.comp; up to 512 (the VAE's single 512-wide head): its attention_d512
    // module. Wider heads, and heads over 256 on a CPU device with the register-blocked kernels, run on the host
    // CPU backend: on a CPU device that is the same processor, and the host kernel is many times faster there
    // than the shared-memory shader (lavapipe: ~80 vs ~1 GFLOP/s for the VAE's head).
    if (D > 512 || (D > 256 && !rb && core_->blocked_kernels_)) {
      Tensor r = cpu_->attention(to_host(q), to_host(k), to_host(v), heads, causal);
      return upload(r);
    }
    Tensor out = empty({B, Tq, HD}, DType::F32);
    if (out.numel() == 0) return out;
    Push pc;
    pc.addr(0, addr(q));
    pc.addr(1, addr(k));
    pc.addr(2, addr(v));
    pc.addr(3, addr(out));
    pc.u[0] = (uint32_t)Tq;
    pc.u[1] = (uint32_t)Tk;
    pc.u[2] = (uint32_t)heads;
    pc.u[3] = (uint32_t)D;
    pc.u[4] = causal ? 1 : 0;
    pc.f(5, (float)(1.0 / std::sqrt((double)D)));
    if (rb) {
      pc.u[6] = (uint32_t)B;
      const int64_t groups = ((Tq + 3) / 4 * B * heads + 63) / 64;
      const uint32_t gx = (uint32_t)std::min<int64_t>(groups, kMaxGroups);
      core_->dispatch("attention_rb_d" + std::to_string(D), pc, gx, (uint32_t)((groups + gx - 1) / gx));
      return out;
    }
    if (B * heads > kMaxGroups)
      throw_error(ErrorCode::OutOfMemory, core_->info_.id + ": attention over " + std::to_string(B * heads) +
                                              " (batch x heads) is too large for one dispatch (use device 'cpu')");
    core_->dispatch(D > 256 ? "attention_d512" : "attention", pc, (uint32_t)((Tq + 63) / 64), (uint32_t)(B * heads));
    return out;
  }

  Tensor unary(UnaryOp uop, const Tensor& x_in) override {
    int op = (int)uop;
    if (op < 0 || op > (int)UnaryOp::Tanh) bad("unary", "unknown operation " + std::to_string(op));
    Tensor x = act(x_in, "unary", "x");
    Tensor y = empty(x.sizes(), DType::F32);
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)x.numel();
    pc.u[1] = (uint32_t)op;
    elementwise(pc, x.numel());
    return y;
  }

  Tensor geglu(const Tensor& x_in) override {
    Tensor x = act(x_in, "geglu", "x");
    if (x.ndim < 1 || x.dim(-1) % 2 != 0) bad("geglu", "last dimension must be even, got " + x.shape_str());
    std::vector<int64_t> os = x.sizes();
    const int64_t N = os.back() / 2;
    os.back() = N;
    Tensor y = empty(os, DType::F32);
    if (y.numel() == 0) return y;
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)y.numel();
    pc.u[1] = 14;
    pc.u[4] = (uint32_t)N;
    elementwise(pc, y.numel());
    return y;
  }

  Tensor add(const Tensor& a, const Tensor& b) override { return binary(10, a, b, nullptr, "add"); }
  Tensor mul(const Tensor& a, const Tensor& b) override { return binary(11, a, b, nullptr, "mul"); }
  void add_(Tensor& a, const Tensor& b) override {
    if (!a.on_device()) bad("add_", "a must be a tensor of this device");
    own(a, "add_");
    binary(10, a, b, &a, "add_");
  }

  Tensor scale(const Tensor& x_in, float s) override {
    Tensor x = act(x_in, "scale", "x");
    Tensor y = empty(x.sizes(), DType::F32);
    Push pc;
    pc.addr(0, addr(x));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)x.numel();
    pc.u[1] = 12;
    pc.f(2, s);
    elementwise(pc, x.numel());
    return y;
  }

  Tensor combine(const Tensor& a_in, float wa, const Tensor& b_in, float wb) override {
    Tensor a = act(a_in, "combine", "a"), b = act(b_in, "combine", "b");
    if (a.numel() != b.numel() || a.ndim != b.ndim || a.sizes() != b.sizes())
      bad("combine", "shapes differ: " + a.shape_str() + " and " + b.shape_str());
    Tensor y = empty(a.sizes(), DType::F32);
    Push pc;
    pc.addr(0, addr(a));
    pc.addr(1, addr(b));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)a.numel();
    pc.u[1] = 13;
    pc.f(2, wa);
    pc.f(3, wb);
    elementwise(pc, a.numel());
    return y;
  }

  Tensor concat(const Tensor& a_in, const Tensor& b_in, int dim) override {
    const char* op = "concat";
    Tensor a = act(a_in, op, "a"), b = act(b_in, op, "b");
    if (a.ndim != b.ndim || a.ndim < 1) bad(op, "ranks differ: " + a.shape_str() + " and " + b.shape_str());
    if (dim < 0) dim += a.ndim;
    if (dim < 0 || dim >= a.ndim) bad(op, "dimension " + std::to_string(dim) + " out of range for " + a.shape_str());
    for (int i = 0; i < a.ndim; ++i)
      if (i != dim && a.shape[i] != b.shape[i])
        bad(op, "shapes " + a.shape_str() + " and " + b.shape_str() + " differ outside dimension " +
                    std::to_string(dim));
    std::vector<int64_t> os = a.sizes();
    os[dim] += b.shape[dim];
    Tensor y = empty(os, DType::F32);
    if (y.numel() == 0) return y;
    Push pc;
    pc.addr(0, addr(a));
    pc.addr(1, addr(b));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)y.numel();
    pc.u[1] = 0;
    pc.u[2] = (uint32_t)prod(a.shape, dim, a.ndim);
    pc.u[3] = (uint32_t)prod(b.shape, dim, b.ndim);
    core_->dispatch1d("layout", pc, y.numel(), 0);
    return y;
  }

  Tensor upsample_nearest2x(const Tensor& x_in) override {
    Tensor x = act(x_in, "upsample_nearest2x", "x");
    if (x.ndim != 4) bad("upsample_nearest2x", "expected [B, C, H, W], got " + x.shape_str());
    Tensor y = empty({x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]}, DType::F32);
    return layout(1, x, y, (uint32_t)x.shape[2], (uint32_t)x.shape[3]);
  }

  Tensor nchw_to_nlc(const Tensor& x_in) override {
    Tensor x = act(x_in, "nchw_to_nlc", "x");
    if (x.ndim != 4) bad("nchw_to_nlc", "expected [B, C, H, W], got " + x.shape_str());
    const int64_t HW = x.shape[2] * x.shape[3];
    Tensor y = empty({x.shape[0], HW, x.shape[1]}, DType::F32);
    return layout(2, x, y, (uint32_t)x.shape[1], (uint32_t)HW);
  }

  Tensor nlc_to_nchw(const Tensor& x_in, int64_t h, int64_t w) override {
    Tensor x = act(x_in, "nlc_to_nchw", "x");
    if (x.ndim != 3 || h < 0 || w < 0 || x.shape[1] != h * w)
      bad("nlc_to_nchw", "expected [B, " + std::to_string(h * w) + ", C], got " + x.shape_str());
    Tensor y = empty({x.shape[0], x.shape[2], h, w}, DType::F32);
    return layout(3, x, y, (uint32_t)x.shape[2], (uint32_t)(h * w));
  }

  Tensor pad(const Tensor& x_in, int left, int right, int top, int bottom) override {
    Tensor x = act(x_in, "pad", "x");
    if (x.ndim != 4) bad("pad", "expected [B, C, H, W], got " + x.shape_str());
    if (left < 0 || right < 0 || top < 0 || bottom < 0) bad("pad", "padding must be >= 0");
    const int64_t OH = x.shape[2] + top + bottom, OW = x.shape[3] + left + right;
    Tensor y = empty({x.shape[0], x.shape[1], OH, OW}, DType::F32);
    Push pc;
    pc.u[4] = (uint32_t)left;
    pc.u[5] = (uint32_t)top;
    pc.u[6] = (uint32_t)OH;
    pc.u[7] = (uint32_t)OW;
    return layout(4, x, y, (uint32_t)x.shape[2], (uint32_t)x.shape[3], &pc);
  }

  Tensor timestep_embedding(const std::vector<float>& t, int dim, float max_period) override {
    // a few hundred values: computed by the CPU reference and uploaded with the batch
    return upload(cpu_->timestep_embedding(t, dim, max_period));
  }

  Tensor get_rows(const Tensor& table, const std::vector<int32_t>& ids) override {
    const char* op = "get_rows";
    if (table.ndim != 2) bad(op, "table must be [V, D], got " + table.shape_str());
    const int64_t V = table.shape[0], D = table.shape[1];
    for (int32_t id : ids)
      if (id < 0 || id >= V) bad(op, "id " + std::to_string(id) + " is outside [0, " + std::to_string(V) + ")");
    Tensor y = empty({(int64_t)ids.size(), D}, DType::F32);
    if (y.numel() == 0) return y;
    Tensor idt = empty({(int64_t)ids.size()}, DType::I32);
    core_->upload(buf(idt).alloc().buf, idt.offset, ids.data(), ids.size() * 4);
    Push pc;
    pc.addr(0, weight_addr(table, op));
    pc.addr(1, addr(idt));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)y.numel();
    pc.u[1] = (uint32_t)D;
    core_->dispatch1d("getrows_" + type_suffix(table.dtype) + core_->weight_flavour(table.dtype), pc, y.numel());
    return y;
  }

 private:
  VkBuffer_& buf(const Tensor& t) const { return static_cast<VkBuffer_&>(*t.buffer); }

  // Checks that a device tensor belongs to this backend.
  void own(const Tensor& t, const char* op) const {
    auto* vb = dynamic_cast<VkBuffer_*>(t.buffer.get());
    auto* sb = vb ? nullptr : dynamic_cast<StreamBuf*>(t.buffer.get());
    if (!(vb && vb->core() == core_.get()) && !(sb && sb->core() == core_.get()))
      throw_error(ErrorCode::Internal, std::string("vulkan ") + op + ": " + t.shape_str() +
                                           " lives on another backend (" +
                                           (t.device_backend() ? t.device_backend()->name() : "host") + ")");
  }

  // Device address of a tensor for the operation being recorded (a streamed weight is copied in and pinned until
  // the operation's dispatch: take weight addresses right before the dispatch, after any upload of inputs).
  uint64_t addr(const Tensor& t) const {
    own(t, "operation");
    if (dynamic_cast<StreamBuf*>(t.buffer.get()))
      return core_->stream_addr(std::static_pointer_cast<StreamBuf>(t.buffer)) + t.offset;
    return buf(t).alloc().addr + t.offset;
  }

  // An F32 contiguous device tensor for an activation input (host inputs are uploaded).
  Tensor act(const Tensor& t, const char* op, const char* what) {
    if (!t.defined()) bad(op, std::string(what) + " is undefined");
    if (!t.on_device()) {
      Tensor h = t.dtype == DType::F32 ? t : t.to_f32();
      return upload(h);
    }
    own(t, op);
    if (t.dtype != DType::F32) bad(op, std::string(what) + " must be f32, got " + t.shape_str());
    if (!t.is_contiguous()) bad(op, std::string(what) + " must be contiguous, got " + t.shape_str());
    return t;
  }

  uint64_t weight_addr(const Tensor& w, const char* op) {
    if (!w.on_device())
      throw_error(ErrorCode::Internal, std::string("vulkan ") + op + ": weight " + w.shape_str() +
                                           " was not prepared for this device (prepare_weight)");
    if (!is_device_weight_type(w.dtype))
      throw_error(ErrorCode::Unsupported, std::string("vulkan ") + op + ": no kernel for " + dtype_name(w.dtype));
    return addr(w);
  }

  void check_vec(const Tensor* p, int64_t n, const char* op, const char* what) {
    if (!p) return;
    if (p->numel() != n)
      bad(op, std::string(what) + " has " + std::to_string(p->numel()) + " elements, expected " + std::to_string(n));
    if (!p->on_device() || p->dtype != DType::F32)
      throw_error(ErrorCode::Internal, std::string("vulkan ") + op + ": " + what +
                                           " must be an f32 tensor prepared for this device (prepare_weight)");
    own(*p, op);
  }

  Tensor place_weight(const Tensor& src) {
    const size_t bytes = weight_bytes(src);
    const size_t need = (std::max<size_t>(bytes, 4) + 255) / 256 * 256;
    std::shared_ptr<VkBuffer_> chunk;
    size_t off = 0;
    if (need > kWeightChunk / 4) {  // large weights get their own allocation
      chunk = std::make_shared<VkBuffer_>(*this, core_, core_->allocate(need, false, "a weight"), false);
    } else {
      std::shared_ptr<VkBuffer_> cur = arena_.lock();
      if (!cur || arena_used_ + need > cur->size()) {
        size_t sz = std::min<size_t>(kWeightChunk, core_->max_alloc_);
        cur = std::make_shared<VkBuffer_>(*this, core_, core_->allocate(sz, false, "weights"), false);
        arena_ = cur;
        arena_used_ = 0;
      }
      chunk = cur;
      off = arena_used_;
      arena_used_ += need;
    }
    chunk->used_ += need;
    {
      std::lock_guard<std::mutex> lk(core_->mu_);
      core_->weights_ += need;
      core_->note_weights();
    }
    Tensor t;
    t.dtype = src.dtype;
    t.ndim = src.ndim;
    for (int i = 0; i < src.ndim; ++i) t.shape[i] = src.shape[i];
    t.set_contiguous_strides();
    t.buffer = chunk;
    t.offset = off;
    if (bytes) core_->upload(chunk->alloc().buf, off, src.data, bytes);
    return t;
  }

  Tensor norm(const Tensor& x, Tensor& y, int64_t size, int64_t S, int64_t cpg, int64_t groups, int64_t count,
              const Tensor* gamma, const Tensor* beta, bool silu, float eps) {
    Push pc;
    pc.addr(0, addr(x));
    if (gamma) pc.addr(1, addr(*gamma));
    if (beta) pc.addr(2, addr(*beta));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)size;
    pc.u[1] = (uint32_t)S;
    pc.u[2] = (uint32_t)cpg;
    pc.u[3] = (uint32_t)groups;
    pc.u[4] = gamma ? 1 : 0;
    pc.u[5] = beta ? 1 : 0;
    pc.u[6] = silu ? 1 : 0;
    pc.f(7, eps);
    pc.u[8] = (uint32_t)count;
    rows_dispatch(core_->subgroup_ ? "norm_sg" : "norm", pc, count);
    return y;
  }

  // The GEMM of linear/conv2d (pc filled but for u13). The register-blocked kernel (matmul_rb.comp, CPU devices)
  // takes a 1-D grid of 64-wide workgroups folded into 2-D; the tiled kernel (matmul.comp) one workgroup per
  // 64x64 output tile, split into several dispatches (u13 = first row) when M needs more than 65535 row tiles.
  void matmul_dispatch(const std::string& kind, DType wt, Push pc, int64_t M, int64_t N, int seg = -1) {
    if (core_->coopmat_on_) return coopmat_dispatch(kind, wt, pc, M, N, seg);
    plain_matmul_dispatch(kind, wt, pc, M, N, seg, core_->blocked_kernels_);
  }
  void plain_matmul_dispatch(const std::string& kind, DType wt, Push pc, int64_t M, int64_t N, int seg,
                             bool blocked) {
    if (blocked) {
      const bool conv = kind == "conv_";  // output block per invocation, as matmul_rb.comp's RB_R x RB_C
      const int64_t R = conv ? 16 : 8, Cb = conv ? 8 : 16;
      const int64_t blocks = ((M + R - 1) / R) * ((N + Cb - 1) / Cb);
      const int64_t groups = (blocks + 63) / 64;
      if (groups > (int64_t)kMaxGroups * kMaxGroups)
        throw_error(ErrorCode::OutOfMemory, core_->info_.id + ": " + kind + " output of " + std::to_string(M) + " x " +
                                                std::to_string(N) + " is too large: use a smaller image size or vaeTiling");
      const uint32_t gx = (uint32_t)std::min<int64_t>(groups, kMaxGroups);
      const uint32_t gy = (uint32_t)((groups + gx - 1) / gx);
      core_->dispatch(kind + "rb_" + type_suffix(wt) + core_->weight_flavour(wt), pc, gx, gy, 1, conv ? seg : -1);
      return;
    }
    tiled_dispatch(kind + type_suffix(wt) + core_->weight_flavour(wt), kind, pc, M, N);
  }
  // One workgroup per 64x64 output tile (matmul.comp, matmul_cm.comp), split into several dispatches (u13 = first
  // row) when M needs more than 65535 row tiles.
  void tiled_dispatch(const std::string& shader, const std::string& kind, Push pc, int64_t M, int64_t N,
                      int spec = -1) {
    const uint32_t gy = (uint32_t)((N + 63) / 64);
    if (gy > kMaxGroups)
      throw_error(ErrorCode::OutOfMemory, core_->info_.id + ": " + kind + " with " + std::to_string(N) +
                                              " output features is too large for one dispatch (use device 'cpu')");
    const int64_t tiles = (M + 63) / 64;
    for (int64_t t0 = 0; t0 < tiles; t0 += kMaxGroups) {
      pc.u[13] = (uint32_t)(t0 * 64);
      core_->dispatch(shader, pc, (uint32_t)std::min<int64_t>(tiles - t0, kMaxGroups), gy, 1, spec);
    }
  }

  // ---- cooperative-matrix GEMM, selection part 2 (part 1: coopmat_plan) ----
  // The GEMM with matmul_cm.comp (or, with SDN_VULKAN_COOPMAT=test, the plain kernel variant not otherwise used).
  void coopmat_dispatch(const std::string& kind, DType wt, const Push& pc, int64_t M, int64_t N, int seg) {
    if (core_->coopmat_.test) return plain_matmul_dispatch(kind, wt, pc, M, N, seg, coopmat_test_blocked());
    tiled_dispatch(kind + "cm_" + type_suffix(wt), kind, pc, M, N, (int)core_->coopmat_.n);
  }
  bool coopmat_test_blocked() const { return !core_->blocked_kernels_ && core_->int64_; }

  // Runs linear/conv2d of odd sizes (f16 and q8_0 weights, bias, partial tiles, several tiles in M and N) with the
  // plain kernel and with the candidate; the candidate is used only when every result agrees: max |difference| <=
  // kCoopmatTol x max |plain result|. The candidate rounds x and the weights to f16 (relative error 2^-11 per
  // element, ~5e-4 of the largest output for random data), so 4e-3 leaves a margin of 8 while any indexing or
  // layout error gives differences of the order of the outputs. Any failure (a pipeline the driver rejects, a
  // device error, a mismatch, a non-finite value) turns it off with the reason in device_info() and on stderr.
  static constexpr double kCoopmatTol = 4e-3;
  void coopmat_selfcheck() {
    Core& c = *core_;
    if (!c.coopmat_.candidate) {
      c.info_.cooperative_matrix_kernel = "not used: " + c.coopmat_.why;
      return;
    }
    const std::string what = c.coopmat_.test
                                 ? std::string("test stand-in (SDN_VULKAN_COOPMAT=test): the ") +
                                       (coopmat_test_blocked() ? "register-blocked" : "tiled") + " kernel"
                                 : "VK_NV_cooperative_matrix 16x" + std::to_string(c.coopmat_.n) + "x16 f16 -> f32";
    std::string detail;
    double worst = 0;
    bool ok = true;
    try {
      const char* fault = std::getenv("SDN_VULKAN_COOPMAT_FAULT");
      const bool inject = fault && *fault && *fault != '0';
      // {conv, M or B*OH*OW source sizes, K, N, weight type}
      struct Case { bool conv; int64_t a, b, k, n; DType t; };
      const Case cases[] = {{false, 77, 0, 200, 45, DType::F16},   // one partial tile, K not a multiple of 32
                            {false, 131, 0, 96, 70, DType::Q8_0},  // three row tiles, two column tiles, q8_0
                            {true, 9, 11, 5, 19, DType::F16}};     // 3x3 conv, 5 -> 19 channels, 9x11 image
      uint32_t seed = 12345;
      auto rnd = [&seed]() {
        seed = seed * 1664525u + 1013904223u;
        return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
      };
      for (const Case& cs : cases) {
        const int64_t K = cs.conv ? cs.k * 9 : cs.k;
        Tensor x = cs.conv ? Tensor::empty({1, cs.k, cs.a, cs.b}) : Tensor::empty({cs.a, cs.k});
        for (int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = rnd();
        std::vector<float> wf((size_t)(cs.n * K));
        for (float& v : wf) v = rnd();
        Tensor w = cs.conv ? Tensor::empty({cs.n, cs.k, 3, 3}, cs.t) : Tensor::empty({cs.n, K}, cs.t);
        if (cs.t == DType::F16)
          for (size_t i = 0; i < wf.size(); ++i) w.ptr<uint16_t>()[i] = f32_to_f16(wf[i]);
        else
          for (int64_t r = 0; r < cs.n; ++r)
            quantize_row(cs.t, wf.data() + r * K, static_cast<char*>(w.data) + r * dtype_row_bytes(cs.t, K), K);
        Tensor bias = Tensor::empty({cs.n});
        for (int64_t i = 0; i < cs.n; ++i) bias.f32()[i] = rnd();
        Tensor xd = upload(x), wd = upload(w), bd = upload(bias);
        Tensor got[2];
        for (int v = 0; v < 2; ++v) {
          c.coopmat_on_ = v == 1;
          Tensor y = cs.conv ? conv2d(xd, wd, &bd, 1, 1) : linear(xd, wd, &bd);
          got[v] = to_host(y);
        }
        c.coopmat_on_ = false;
        if (inject) got[1].f32()[got[1].numel() / 2] += 1.0f;
        double ref_max = 0, diff = 0;
        bool finite = true;
        for (int64_t i = 0; i < got[0].numel(); ++i) {
          const double a = got[0].f32()[i], b = got[1].f32()[i];
          if (!std::isfinite(b)) finite = false;
          ref_max = std::max(ref_max, std::fabs(a));
          diff = std::max(diff, std::fabs(a - b));
        }
        const double rel = ref_max > 0 ? diff / ref_max : diff;
        worst = std::max(worst, rel);
        if (!finite || !(rel <= kCoopmatTol)) {
          char b[256];
          std::snprintf(b, sizeof b, "%s %s %s: max |difference| %.3g of max |result| %.3g (allowed %.3g)%s",
                        cs.conv ? "conv2d" : "linear", x.shape_str().c_str(), dtype_name(cs.t), diff, ref_max,
                        kCoopmatTol * ref_max, finite ? "" : ", non-finite values");
          detail = b;
          ok = false;
          break;
        }
      }
    } catch (const std::exception& e) {
      c.coopmat_on_ = false;
      detail = e.what();
      ok = false;
    }
    c.coopmat_on_ = ok;
    char b[64];
    std::snprintf(b, sizeof b, "%.2g", worst);
    c.info_.cooperative_matrix_kernel =
        ok ? "in use: " + what + " (self-check passed: largest difference " + b + " of the largest output)"
           : "not used: the self-check of the " + what + " failed: " + detail;
    const char* dbg = std::getenv("SDN_DEBUG");
    if (!ok || (dbg && *dbg && *dbg != '0'))
      std::fprintf(stderr, "sdnode: %s cooperative-matrix GEMM %s\n", c.info_.id.c_str(),
                   c.info_.cooperative_matrix_kernel.c_str());
  }

  // One workgroup per row, folded into a 2-D grid (the shader skips workgroups past the row count).
  void rows_dispatch(const char* shader, const Push& pc, int64_t rows) {
    uint32_t gx = (uint32_t)std::min<int64_t>(rows, kMaxGroups);
    uint32_t gy = (uint32_t)((rows + gx - 1) / gx);
    core_->dispatch(shader, pc, gx, gy);
  }

  void elementwise(const Push& pc, int64_t n) { core_->dispatch1d("eltwise", pc, n, (int)pc.u[1]); }

  Tensor layout(uint32_t mode, const Tensor& x, Tensor& y, uint32_t u2, uint32_t u3, Push* base = nullptr) {
    if (y.numel() == 0) return y;
    Push pc = base ? *base : Push();
    pc.addr(0, addr(x));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)y.numel();
    pc.u[1] = mode;
    pc.u[2] = u2;
    pc.u[3] = u3;
    core_->dispatch1d("layout", pc, y.numel(), (int)mode);
    return y;
  }

  Tensor binary(uint32_t mode, const Tensor& a_in, const Tensor& b_in, Tensor* inplace, const char* op) {
    Tensor a = inplace ? *inplace : act(a_in, op, "a");
    if (inplace && (a.dtype != DType::F32 || !a.is_contiguous())) bad(op, "a must be a contiguous f32 tensor");
    Tensor b = act(b_in, op, "b");
    const int nd = a.ndim;
    if (nd > 4) bad(op, "at most 4 dimensions");
    for (int i = 0; i < b.ndim - nd; ++i)
      if (b.shape[i] != 1) bad(op, "cannot broadcast " + b.shape_str() + " onto " + a.shape_str());
    uint32_t as[4] = {1, 1, 1, 1}, bstr[4] = {0, 0, 0, 0};
    int64_t bs[4] = {1, 1, 1, 1};
    for (int i = 0; i < nd; ++i) {
      int bi = b.ndim - nd + i;
      bs[4 - nd + i] = bi >= 0 ? b.shape[bi] : 1;
      as[4 - nd + i] = (uint32_t)a.shape[i];
      if (bs[4 - nd + i] != 1 && bs[4 - nd + i] != a.shape[i])
        bad(op, "cannot broadcast " + b.shape_str() + " onto " + a.shape_str());
    }
    int64_t s = 1;
    for (int i = 3; i >= 0; --i) {
      bstr[i] = bs[i] == 1 ? 0 : (uint32_t)s;
      s *= bs[i];
    }
    Tensor y = inplace ? a : empty(a.sizes(), DType::F32);
    if (y.numel() == 0) return y;
    Push pc;
    pc.addr(0, addr(a));
    pc.addr(1, addr(b));
    pc.addr(3, addr(y));
    pc.u[0] = (uint32_t)a.numel();
    pc.u[1] = mode;
    for (int i = 0; i < 4; ++i) {
      pc.u[4 + i] = as[i];
      pc.u[8 + i] = bstr[i];
    }
    elementwise(pc, a.numel());
    return y;
  }

  // y (= [M, N]) set to the bias (or zeros) when K == 0
  Tensor fill_bias(Tensor& y, const Tensor* b, int64_t N, int64_t M) {
    Tensor h = Tensor::zeros(y.sizes());
    if (b) {
      Tensor hb = to_host(*b);
      for (int64_t m = 0; m < M; ++m) std::memcpy(h.f32() + m * N, hb.f32(), N * 4);
    }
    write(y, h);
    return y;
  }
  Tensor fill_bias_nchw(Tensor& y, const Tensor* b) {
    Tensor h = Tensor::zeros(y.sizes());
    if (b) {
      Tensor hb = to_host(*b);
      const int64_t OC = y.shape[1], S = y.shape[2] * y.shape[3];
      for (int64_t i = 0; i < y.shape[0] * OC; ++i)
        for (int64_t s = 0; s < S; ++s) h.f32()[i * S + s] = hb.f32()[i % OC];
    }
    write(y, h);
    return y;
  }

  std::shared_ptr<Core> core_;
  std::shared_ptr<Backend> cpu_;  // attention heads the shaders do not take (see attention())
  std::weak_ptr<VkBuffer_> arena_;
  size_t arena_used_ = 0;
};

class VulkanFactory final : public BackendFactory {
 public:
  const char* name() const override { return "vulkan"; }
  std::vector<DeviceInfo> devices() override { return discovery().infos; }
  std::string unavailable_reason() override {
    Discovery& d = discovery();
    return d.infos.empty() ? d.reason : "";
  }
  std::shared_ptr<Backend> create(int index, const BackendOptions& options) override {
    Discovery& d = discovery();
    if (index < 0 || index >= (int)d.infos.size())
      throw_error(ErrorCode::Unsupported, "device 'vulkan:" + std::to_string(index) + "' was not found (" +
                                              std::to_string(d.infos.size()) + " Vulkan device(s)" +
                                              (d.reason.empty() ? "" : ": " + d.reason) + "; use device 'cpu')");
    if (!d.infos[index].usable)
      throw_error(ErrorCode::Unsupported, "device '" + d.infos[index].id + "' is unusable: " +
                                              d.infos[index].unusable_reason + " (use device 'cpu')");
    return std::make_shared<VulkanBackend>(index, options);
  }
};

}  // namespace

BackendFactory* vulkan_backend_factory() {
  static VulkanFactory f;
  return &f;
}

}  // namespace sdn
