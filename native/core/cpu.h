// CPU feature detection and the SIMD level used by kernels (picked once when the library loads).
#pragma once
#include <string>

namespace sdn {

enum class SimdLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512bf16 = false, avx512vnni = false;
  bool neon = false;
  int physical_cores = 1;
  int logical_cores = 1;
  std::string brand;   // "AMD EPYC 9B45" ("" where unknown)
  std::string vendor;  // "AMD", "Intel", "ARM", ... ("" where unknown)
};

const CpuFeatures& cpu_features();
// Installed physical memory in bytes (0 where unknown).
unsigned long long physical_memory_bytes();
// Best level this CPU supports.
SimdLevel simd_best();
// Level in use. Defaults to simd_best(), or to the SDN_SIMD environment variable (scalar|avx2|avx512|neon)
// when set to a level the CPU supports.
SimdLevel simd_level();
// Forces a level (tests use this to exercise every path). Returns false (and changes nothing) if unsupported.
bool simd_set_level(SimdLevel level);
bool simd_supported(SimdLevel level);
const char* simd_name(SimdLevel level);

}  // namespace sdn
