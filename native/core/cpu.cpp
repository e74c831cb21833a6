#include "core/cpu.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace sdn {

namespace {

#if defined(__x86_64__) || defined(_M_X64)
uint64_t xgetbv0() {
  uint32_t a, d;
  __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
  return ((uint64_t)d << 32) | a;
}
#endif

int count_physical_cores() {
  // Linux: count distinct (physical id, core id) pairs.
  std::ifstream f("/proc/cpuinfo");
  if (!f) return 0;
  std::set<std::pair<int, int>> cores;
  std::string line;
  int phys = 0, core = -1;
  while (std::getline(f, line)) {
    if (line.rfind("physical id", 0) == 0) phys = std::atoi(line.substr(line.find(':') + 1).c_str());
    if (line.rfind("core id", 0) == 0) core = std::atoi(line.substr(line.find(':') + 1).c_str());
    if (line.empty() && core >= 0) {
      cores.insert({phys, core});
      core = -1;
    }
  }
  if (core >= 0) cores.insert({phys, core});
  return (int)cores.size();
}

// Brand and vendor from /proc/cpuinfo (Linux); left empty elsewhere.
void read_brand(CpuFeatures& c) {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    std::string l(line);
    size_t colon = l.find(':');
    if (colon == std::string::npos) continue;
    std::string key = l.substr(0, l.find_last_not_of(" \t", colon - 1) + 1);
    std::string val = l.substr(colon + 1);
    while (!val.empty() && (val.front() == ' ' || val.front() == '\t')) val.erase(0, 1);
    while (!val.empty() && (val.back() == '\n' || val.back() == ' ')) val.pop_back();
    if (c.brand.empty() && key == "model name") c.brand = val.substr(0, 128);
    if (c.vendor.empty() && (key == "vendor_id" || key == "CPU implementer")) {
      if (val == "AuthenticAMD") c.vendor = "AMD";
      else if (val == "GenuineIntel") c.vendor = "Intel";
      else if (val == "0x41") c.vendor = "ARM";
      else c.vendor = val.substr(0, 32);
    }
  }
  std::fclose(f);
}

CpuFeatures detect() {
  CpuFeatures c;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, cx, d;
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    bool osxsave = cx & (1u << 27);
    bool avx = cx & (1u << 28);
    c.fma = cx & (1u << 12);
    c.f16c = cx & (1u << 29);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6;
    bool zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
      c.avx2 = avx && ymm_os && (b & (1u << 5));
      if (zmm_os) {
        c.avx512f = b & (1u << 16);
        c.avx512dq = b & (1u << 17);
        c.avx512bw = b & (1u << 30);
        c.avx512vl = b & (1u << 31);
        c.avx512vnni = cx & (1u << 11);
      }
      unsigned a1, b1, c1, d1;
      if (zmm_os && __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) c.avx512bf16 = a1 & (1u << 5);
    }
    if (!ymm_os) c.fma = c.f16c = false;
  }
#elif defined(__aarch64__)
  c.neon = true;
#endif
  c.logical_cores = (int)std::thread::hardware_concurrency();
  if (c.logical_cores <= 0) c.logical_cores = 1;
  int phys = count_physical_cores();
  c.physical_cores = phys > 0 ? phys : c.logical_cores;
  read_brand(c);
  return c;
}

std::atomic<int> g_level{-1};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

bool simd_supported(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case SimdLevel::Scalar: return true;
    case SimdLevel::AVX2: return f.avx2 && f.fma && f.f16c;
    case SimdLevel::AVX512:
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512bf16 && f.avx512vnni && f.fma &&
             f.f16c;
    case SimdLevel::NEON: return f.neon;
  }
  return false;
}

SimdLevel simd_best() {
  if (simd_supported(SimdLevel::AVX512)) return SimdLevel::AVX512;
  if (simd_supported(SimdLevel::AVX2)) return SimdLevel::AVX2;
  if (simd_supported(SimdLevel::NEON)) return SimdLevel::NEON;
  return SimdLevel::Scalar;
}

const char* simd_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::NEON: return "neon";
  }
  return "unknown";
}

SimdLevel simd_level() {
  int l = g_level.load(std::memory_order_relaxed);
  if (l >= 0) return (SimdLevel)l;
  SimdLevel chosen = simd_best();
  if (const char* env = std::getenv("SDN_SIMD")) {
    for (SimdLevel cand : {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512, SimdLevel::NEON})
      if (std::strcmp(env, simd_name(cand)) == 0 && simd_supported(cand)) chosen = cand;
  }
  g_level.store((int)chosen);
  return chosen;
}

bool simd_set_level(SimdLevel level) {
  if (!simd_supported(level)) return false;
  g_level.store((int)level);
  return true;
}

unsigned long long physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return (unsigned long long)pages * (unsigned long long)page;
#endif
  return 0;
}

}  // namespace sdn
