// The name each compiled copy of the simd/ folder was built for (checks that dispatch reaches every copy).
#include "backends/cpu/simd/isa_name.h"

#define SDN_STR2(x) #x
#define SDN_STR(x) SDN_STR2(x)

namespace sdn {
namespace cpu {
namespace SDN_ISA {
const char* isa_name() { return SDN_STR(SDN_ISA); }
}  // namespace SDN_ISA
}  // namespace cpu
}  // namespace sdn
