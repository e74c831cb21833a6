// Include AFTER all other headers in files whose results must not depend on whether the compiler fuses a*b+c into
// one rounding (quantized bytes are compared across SIMD levels and platforms; decoders must equal the reference).
// Turns off floating-point contraction for the rest of the including translation unit.
#pragma once
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
