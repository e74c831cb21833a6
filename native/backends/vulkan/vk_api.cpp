// Run-time loading of the Vulkan loader library (see vk_api.h).
#include "backends/vulkan/vk_api.h"

#include <cstdlib>
#include <mutex>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace sdn {
namespace vk {

namespace {

void* open_library(const char* name) {
#if defined(_WIN32)
  return (void*)LoadLibraryA(name);
#else
  return dlopen(name, RTLD_NOW | RTLD_LOCAL);
#endif
}

void* find_symbol(void* lib, const char* name) {
#if defined(_WIN32)
  return (void*)GetProcAddress((HMODULE)lib, name);
#else
  return dlsym(lib, name);
#endif
}

}  // namespace

Api* load_loader(std::string* why) {
  static std::once_flag once;
  static Api api;
  static bool ok = false;
  static std::string reason;
  std::call_once(once, [] {
#if defined(_WIN32)
    const char* names[] = {"vulkan-1.dll"};
#elif defined(__APPLE__)
    const char* names[] = {"libvulkan.1.dylib", "libvulkan.dylib", "libMoltenVK.dylib"};
#else
    const char* names[] = {"libvulkan.so.1", "libvulkan.so"};
#endif
    // SDN_VULKAN_LOADER names another loader library (tests use it to check the "no loader" path).
    const char* over = std::getenv("SDN_VULKAN_LOADER");
    void* lib = nullptr;
    std::string tried;
    if (over && *over) {
      lib = open_library(over);
      tried = over;
    } else {
      for (const char* n : names) {
        tried += (tried.empty() ? "" : ", ") + std::string(n);
        if ((lib = open_library(n))) break;
      }
    }
    if (!lib) {
      reason = "no Vulkan loader found (" + tried + ")";
      return;
    }
    api.vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr)find_symbol(lib, "vkGetInstanceProcAddr");
    if (!api.vkGetInstanceProcAddr) {
      reason = "the Vulkan loader (" + tried + ") has no vkGetInstanceProcAddr";
      return;
    }
#define SDN_VK_LOAD_GLOBAL(name) api.name = (PFN_##name)api.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name);
    SDN_VK_GLOBAL_FNS(SDN_VK_LOAD_GLOBAL)
#undef SDN_VK_LOAD_GLOBAL
    if (!api.vkCreateInstance) {
      reason = "the Vulkan loader (" + tried + ") has no vkCreateInstance";
      return;
    }
    ok = true;
  });
  if (!ok) {
    if (why) *why = reason;
    return nullptr;
  }
  return &api;
}

std::string load_instance_functions(Api& api, VkInstance instance) {
#define SDN_VK_LOAD_INSTANCE(name)                                         \
  api.name = (PFN_##name)api.vkGetInstanceProcAddr(instance, #name);       \
  if (!api.name) return #name;
  SDN_VK_INSTANCE_FNS(SDN_VK_LOAD_INSTANCE)
#undef SDN_VK_LOAD_INSTANCE
  api.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
      api.vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
  return "";
}

std::string result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    default: return "VkResult " + std::to_string((int)r);
  }
}

}  // namespace vk
}  // namespace sdn
