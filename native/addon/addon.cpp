// N-API entry point: registers the functions and classes the TypeScript layer (lib/binding.ts) uses.
#include <napi.h>

#include "sdn/sdn.h"

namespace {

Napi::Value GetSystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sdn::SystemInfo s = sdn::system_info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", s.version);
  o.Set("simd", s.simd);
  o.Set("threads", s.threads);
  o.Set("physicalCores", s.physical_cores);
  Napi::Array b = Napi::Array::New(env, s.backends.size());
  for (size_t i = 0; i < s.backends.size(); ++i) b.Set((uint32_t)i, s.backends[i]);
  o.Set("backends", b);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("getSystemInfo", Napi::Function::New(env, GetSystemInfo));
  return exports;
}

}  // namespace

NODE_API_MODULE(sdnode, Init)
