// Run-time SIMD dispatch for the CPU kernels.
//
// Every .cpp in this folder is compiled once per instruction set (see CMakeLists.txt) with SDN_ISA defined to the
// level's name (scalar, avx2, avx512 on x86-64; scalar, neon on ARM64) and SDN_ISA_<name> defined to 1. A kernel
// file therefore writes its functions once, inside `namespace sdn::cpu::SDN_ISA`, using intrinsics under
// `#if SDN_ISA_avx512` etc. with a plain C++ fallback, and callers pick the compiled copy for the level in use:
//
//   // in a kernels header (included by both the simd/ file and its callers):
//   SDN_DECLARE_ISA(void my_kernel(const float* x, float* y, int64_t n));
//   // caller:
//   SDN_DISPATCH(my_kernel)(x, y, n);
#pragma once
#include "core/cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#define SDN_DECLARE_ISA(decl) \
  namespace sdn {             \
  namespace cpu {             \
  namespace scalar {          \
  decl;                       \
  }                           \
  namespace avx2 {            \
  decl;                       \
  }                           \
  namespace avx512 {          \
  decl;                       \
  }                           \
  }                           \
  }
#define SDN_DISPATCH(fn)                                                               \
  (::sdn::simd_level() == ::sdn::SimdLevel::AVX512 ? &::sdn::cpu::avx512::fn           \
   : ::sdn::simd_level() == ::sdn::SimdLevel::AVX2 ? &::sdn::cpu::avx2::fn             \
                                                    : &::sdn::cpu::scalar::fn)
#elif defined(__aarch64__)
#define SDN_DECLARE_ISA(decl) \
  namespace sdn {             \
  namespace cpu {             \
  namespace scalar {          \
  decl;                       \
  }                           \
  namespace neon {            \
  decl;                       \
  }                           \
  }                           \
  }
#define SDN_DISPATCH(fn) \
  (::sdn::simd_level() == ::sdn::SimdLevel::NEON ? &::sdn::cpu::neon::fn : &::sdn::cpu::scalar::fn)
#else
#define SDN_DECLARE_ISA(decl) \
  namespace sdn {             \
  namespace cpu {             \
  namespace scalar {          \
  decl;                       \
  }                           \
  }                           \
  }
#define SDN_DISPATCH(fn) (&::sdn::cpu::scalar::fn)
#endif
