#include "backends/backend.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "sdn/sdn.h"

#include <string>

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

int max_threads() {
  const int n = cpu_features().logical_cores;
  return n > 0 ? n : 1;
}

void validate_threads(int threads) {
  const int max = max_threads();
  if (threads > max)
    throw_error(ErrorCode::InvalidArgument,
                "threads must be 0 (one per physical core) or at most " + std::to_string(max) +
                    " (this machine's hardware threads), got " + std::to_string(threads) +
                    ": more threads than the hardware has only slow every thread down");
}

void set_threads(int n) {
  validate_threads(n);
  set_default_threads(n);
}

}  // namespace sdn
