// sdnode addon: engine structs -> JavaScript values (JS thread only).
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "sdn/sdn.h"

namespace sdnaddon {

// ["a", "b", ...]
Napi::Array to_js(Napi::Env env, const std::vector<std::string>& v);
Napi::Object to_js(Napi::Env env, const sdn::ModelInfo& m);
Napi::Object to_js(Napi::Env env, const sdn::ConvertSummary& s);
Napi::Object to_js(Napi::Env env, const sdn::SystemInfo& s);
// {width, height, channels, data: Buffer (a copy: Electron forbids external buffers), seed}
Napi::Object to_js(Napi::Env env, const sdn::Image& img);
const char* phase_name(sdn::Phase p);

}  // namespace sdnaddon
