#include "marshal.h"

namespace sdnaddon {

namespace {
Napi::Object map_to_js(Napi::Env env, const std::map<std::string, int64_t>& m) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& kv : m) o.Set(kv.first, Napi::Number::New(env, (double)kv.second));
  return o;
}
}  // namespace

Napi::Array to_js(Napi::Env env, const std::vector<std::string>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set((uint32_t)i, v[i]);
  return a;
}

Napi::Object to_js(Napi::Env env, const sdn::ModelInfo& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", m.path);
  o.Set("format", m.format);
  o.Set("family", m.family);
  o.Set("variant", m.variant);
  o.Set("prediction", m.prediction);
  o.Set("predictionSource", m.prediction_source);
  o.Set("runnable", m.runnable);
  o.Set("notRunnableReason", m.not_runnable_reason);
  o.Set("tensorCount", (double)m.tensor_count);
  o.Set("parameterCount", (double)m.parameter_count);
  o.Set("sizeBytes", (double)m.size_bytes);
  o.Set("tensorsByType", map_to_js(env, m.tensors_by_type));
  Napi::Object md = Napi::Object::New(env);
  for (const auto& kv : m.metadata) md.Set(kv.first, kv.second);
  o.Set("metadata", md);
  o.Set("hasTokenizer", m.has_tokenizer);
  o.Set("sizeMultiple", m.size_multiple);
  return o;
}

Napi::Object to_js(Napi::Env env, const sdn::ConvertSummary& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tensorCount", (double)s.tensor_count);
  o.Set("bytesIn", (double)s.bytes_in);
  o.Set("bytesOut", (double)s.bytes_out);
  o.Set("tensorsByType", map_to_js(env, s.tensors_by_type));
  return o;
}

Napi::Object to_js(Napi::Env env, const sdn::SystemInfo& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", s.version);
  o.Set("simd", s.simd);
  o.Set("threads", s.threads);
  o.Set("physicalCores", s.physical_cores);
  o.Set("backends", to_js(env, s.backends));
  Napi::Array devs = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); ++i) {
    const sdn::DeviceInfo& d = s.devices[i];
    Napi::Object x = Napi::Object::New(env);
    x.Set("id", d.id);
    x.Set("backend", d.backend);
    x.Set("index", d.index);
    x.Set("name", d.name);
    x.Set("vendor", d.vendor);
    x.Set("driver", d.driver);
    x.Set("type", d.type);
    x.Set("memoryBytes", (double)d.memory_bytes);
    x.Set("fp16", d.fp16);
    x.Set("int8", d.int8);
    x.Set("cooperativeMatrix", d.cooperative_matrix);
    if (!d.cooperative_matrix_kernel.empty()) x.Set("cooperativeMatrixKernel", d.cooperative_matrix_kernel);
    x.Set("usable", d.usable);
    if (!d.usable) x.Set("unusableReason", d.unusable_reason);
    devs.Set((uint32_t)i, x);
  }
  o.Set("devices", devs);
  o.Set("backendNotes", to_js(env, s.backend_notes));
  return o;
}

Napi::Object to_js(Napi::Env env, const sdn::Image& img) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("width", img.width);
  o.Set("height", img.height);
  o.Set("channels", img.channels);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, img.data.data(), img.data.size()));
  o.Set("seed", (double)img.seed);
  o.Set("warnings", to_js(env, img.warnings));
  o.Set("adapterBytes", (double)img.adapter_bytes);
  return o;
}

const char* phase_name(sdn::Phase p) {
  switch (p) {
    case sdn::Phase::Encode: return "encode";
    case sdn::Phase::Sample: return "sample";
    case sdn::Phase::Decode: return "decode";
  }
  return "sample";
}

}  // namespace sdnaddon
