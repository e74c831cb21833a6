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
  s.backends = {"cpu"};
  return s;
}

void set_threads(int n) { set_default_threads(n); }

}  // namespace sdn
