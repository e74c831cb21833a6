// The usable Vulkan devices for the Vulkan tests (printing SKIP with the reason when there are none).
#pragma once
#include <cstdio>
#include <vector>

#include "backends/backend.h"

namespace sdntest {

inline std::vector<sdn::DeviceInfo> vk_devices(const char* test) {
  std::vector<sdn::DeviceInfo> out;
  sdn::BackendFactory* f = sdn::find_backend_factory("vulkan");
  if (!f) {
    std::fprintf(stderr, "SKIP: %s: the Vulkan backend is not compiled in (needs glslc and libvulkan-dev)\n", test);
    return out;
  }
  for (const sdn::DeviceInfo& d : f->devices())
    if (d.usable) out.push_back(d);
  if (out.empty())
    std::fprintf(stderr, "SKIP: %s: no usable Vulkan device (%s)\n", test, f->unavailable_reason().c_str());
  return out;
}

}  // namespace sdntest
