#include "backends/backend.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "sdn/sdn.h"

namespace sdn {

SystemInfo system_info() {
  SystemInfo s;
  s.version = kEngineVersion;
  s.simd = simd_name(simd_level());
  s.threads = default_threads();
  s.physical_cores = cpu_features().physical_cores;
  for (BackendFactory* f : backend_factories()) {
    s.backends.push_back(f->name());
    std::vector<DeviceInfo> devs = f->devices();
    if (devs.empty()) {
      std::string r = f->unavailable_reason();
      s.backend_notes.push_back(std::string(f->name()) + ": " + (r.empty() ? "no devices found" : r));
    }
    for (DeviceInfo& d : devs) s.devices.push_back(std::move(d));
  }
  return s;
}

void set_threads(int n) { set_default_threads(n); }

}  // namespace sdn
