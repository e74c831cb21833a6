// Test/fuzz helper: builds a stored (uncompressed) zip archive in memory, as torch.save lays out a checkpoint.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sdnfuzz {

inline void put16(std::string& s, uint32_t v) { s += (char)(v & 0xff), s += (char)((v >> 8) & 0xff); }
inline void put32(std::string& s, uint32_t v) { put16(s, v & 0xffff), put16(s, v >> 16); }

inline std::string zip_stored(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  for (const auto& e : entries) {
    uint32_t off = (uint32_t)out.size();
    out += "PK\x03\x04";
    put16(out, 20), put16(out, 0), put16(out, 0), put16(out, 0), put16(out, 0);
    put32(out, 0), put32(out, (uint32_t)e.second.size()), put32(out, (uint32_t)e.second.size());
    put16(out, (uint32_t)e.first.size()), put16(out, 0);
    out += e.first + e.second;
    cd += "PK\x01\x02";
    put16(cd, 20), put16(cd, 20), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
    put32(cd, 0), put32(cd, (uint32_t)e.second.size()), put32(cd, (uint32_t)e.second.size());
    put16(cd, (uint32_t)e.first.size()), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
    put32(cd, 0), put32(cd, off);
    cd += e.first;
  }
  uint32_t cd_off = (uint32_t)out.size();
  out += cd;
  out += "PK\x05\x06";
  put16(out, 0), put16(out, 0), put16(out, (uint32_t)entries.size()), put16(out, (uint32_t)entries.size());
  put32(out, (uint32_t)cd.size()), put32(out, cd_off), put16(out, 0);
  return out;
}

}  // namespace sdnfuzz
