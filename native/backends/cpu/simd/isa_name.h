#pragma once
#include "backends/cpu/simd/simd.h"

SDN_DECLARE_ISA(const char* isa_name())
