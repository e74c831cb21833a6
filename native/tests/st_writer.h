// Test helper: writes a safetensors file of F32 tensors (name, shape, values), for adapter files made in tests.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace sdntest {

struct StTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

inline void write_f32_safetensors(const std::string& path, const std::vector<StTensor>& ts) {
  std::string hdr = "{", data;
  for (size_t i = 0; i < ts.size(); ++i) {
    std::string shape = "[";
    for (size_t k = 0; k < ts[i].shape.size(); ++k) shape += (k ? "," : "") + std::to_string(ts[i].shape[k]);
    shape += "]";
    size_t a = data.size();
    data.append(reinterpret_cast<const char*>(ts[i].values.data()), ts[i].values.size() * 4);
    hdr += std::string(i ? "," : "") + "\"" + ts[i].name + "\":{\"dtype\":\"F32\",\"shape\":" + shape +
           ",\"data_offsets\":[" + std::to_string(a) + "," + std::to_string(data.size()) + "]}";
  }
  hdr += "}";
  while (hdr.size() % 8) hdr += ' ';
  uint64_t len = hdr.size();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&len), 8);
  f.write(hdr.data(), (std::streamsize)hdr.size());
  f.write(data.data(), (std::streamsize)data.size());
}

}  // namespace sdntest
