// The Vulkan functions sdnode uses, loaded at run time from the system's Vulkan loader (libvulkan.so.1,
// vulkan-1.dll, libvulkan.1.dylib / MoltenVK), so the engine has no link-time dependency on Vulkan and runs
// where it is absent. Headers only (Debian libvulkan-dev), with VK_NO_PROTOTYPES: every call goes through Api.
#pragma once
#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

#include <string>

namespace sdn {
namespace vk {

#define SDN_VK_GLOBAL_FNS(X) X(vkCreateInstance) X(vkEnumerateInstanceExtensionProperties)

#define SDN_VK_INSTANCE_FNS(X)                                                                                   \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                          \
  X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties)     \
  X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice)        \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements)  \
  X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                     \
  X(vkGetBufferDeviceAddress) X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreatePipelineLayout)        \
  X(vkDestroyPipelineLayout) X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateCommandPool)            \
  X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer)             \
  X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdPushConstants) X(vkCmdDispatch) X(vkCmdCopyBuffer)        \
  X(vkCmdPipelineBarrier) X(vkQueueSubmit) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences)                \
  X(vkResetFences) X(vkDeviceWaitIdle)

struct Api {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
#define SDN_VK_DECL(name) PFN_##name name = nullptr;
  SDN_VK_GLOBAL_FNS(SDN_VK_DECL)
  SDN_VK_INSTANCE_FNS(SDN_VK_DECL)
#undef SDN_VK_DECL
  // optional (extension functions, nullptr where the loader/driver lacks them)
  PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV vkGetPhysicalDeviceCooperativeMatrixPropertiesNV = nullptr;
};

// Opens the loader once per process and resolves the global functions. Returns nullptr and sets *why
// ("no Vulkan loader found (libvulkan.so.1)") when it is missing.
Api* load_loader(std::string* why);
// Resolves the instance-level functions (device functions included, through the loader's trampolines).
// Returns the name of the first missing function, or "" when all were found.
std::string load_instance_functions(Api& api, VkInstance instance);

std::string result_name(VkResult r);

}  // namespace vk
}  // namespace sdn
