// sdn_formats: command-line access to the model-file layer (for tests and debugging).
//   sdn_formats inspect PATH                         ModelInfo as JSON
//   sdn_formats list PATH                            "name [shape] dtype" per tensor (canonical names)
//   sdn_formats convert IN OUT [--type T] [--vae-type T] [--tokenizer F]   ConvertSummary as JSON
//   sdn_formats compare A B [--tol-f16 x] [--tol TYPE=x ...]
//        compares every tensor of A and B (same names and shapes required); prints JSON with the worst relative
//        error (|a-b| / max|a|) per tensor type of B. Exit 0 when names/shapes match and errors are within
//        tolerance, 1 otherwise.
//   sdn_formats merges PATH                          prints the embedded tokenizer merges
//   sdn_formats check PATH                           opens the file with its data, inspects it and, for an SD1.x
//        model, validates every tensor against the architecture (what Model::load checks); prints "ok"
// Errors: prints "ERROR <Code>: <message>" on stderr, exit 2.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "formats/weight_file.h"
#include "models/validate.h"
#include "sdn/sdn.h"

using namespace sdn;

static std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += (char)c;
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else o += (char)c;
  }
  return o + "\"";
}

static void print_info(const ModelInfo& i) {
  std::printf("{\"path\":%s,\"format\":%s,\"family\":%s,\"variant\":%s,\"prediction\":%s,\"runnable\":%s,"
              "\"not_runnable_reason\":%s,\"tensor_count\":%lld,\"parameter_count\":%lld,\"size_bytes\":%lld,"
              "\"has_tokenizer\":%s,\"tensors_by_type\":{",
              jstr(i.path).c_str(), jstr(i.format).c_str(), jstr(i.family).c_str(), jstr(i.variant).c_str(),
              jstr(i.prediction).c_str(), i.runnable ? "true" : "false", jstr(i.not_runnable_reason).c_str(),
              (long long)i.tensor_count, (long long)i.parameter_count, (long long)i.size_bytes,
              i.has_tokenizer ? "true" : "false");
  bool first = true;
  for (auto& kv : i.tensors_by_type) {
    std::printf("%s%s:%lld", first ? "" : ",", jstr(kv.first).c_str(), (long long)kv.second);
    first = false;
  }
  std::printf("},\"metadata\":{");
  first = true;
  for (auto& kv : i.metadata) {
    std::printf("%s%s:%s", first ? "" : ",", jstr(kv.first).c_str(), jstr(kv.second).c_str());
    first = false;
  }
  std::printf("}}\n");
}

static int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: sdn_formats inspect|list|convert|compare|merges|check ...\n");
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "inspect") {
    print_info(inspect_model(argv[2]));
    return 0;
  }
  if (cmd == "list") {
    auto wf = WeightFile::open(argv[2]);
    for (auto& n : wf->names()) std::printf("%s %s\n", n.c_str(), wf->get(n).shape_str().c_str());
    return 0;
  }
  if (cmd == "check") {
    auto wf = WeightFile::open(argv[2]);
    for (auto& n : wf->names()) (void)wf->get(n).nbytes();
    const std::string family = wf->info().family;
    if ((family == "sd1" || family == "sd2" || family == "sdxl") &&
        wf->has("model.diffusion_model.input_blocks.0.0.weight")) {
      WeightStore store(wf.get(), cpu_backend());
      ModelShapeSpec spec;
      spec.family = family;
      // head counts as Model::load reads them (tiny test models record theirs)
      auto md_int = [&](const char* key, int def) {
        auto it = wf->metadata().find(key);
        const int v = it == wf->metadata().end() ? 0 : std::atoi(it->second.c_str());
        return v > 0 && v <= 1024 ? v : def;
      };
      spec.clip_heads = md_int("sdnode.clip.heads", 0);
      spec.unet_heads = md_int("sdnode.unet.heads", 0);
      spec.unet_head_dim = md_int("sdnode.unet.head_dim", 64);
      spec.unet_file = argv[2];
      validate_model_shapes(store, spec);
    }
    std::printf("ok\n");
    return 0;
  }
  if (cmd == "merges") {
    auto wf = WeightFile::open(argv[2]);
    std::fputs(wf->tokenizer_merges().c_str(), stdout);
    return 0;
  }
  if (cmd == "convert") {
    if (argc < 4) throw Error(ErrorCode::InvalidArgument, "convert IN OUT [--type T] [--vae-type T] [--tokenizer F]");
    ConvertOptions o;
    for (int i = 4; i + 1 < argc; i += 2) {
      std::string f = argv[i];
      if (f == "--type") o.type = argv[i + 1];
      else if (f == "--vae-type") o.vae_type = argv[i + 1];
      else if (f == "--tokenizer") o.tokenizer_path = argv[i + 1];
      else throw Error(ErrorCode::InvalidArgument, "unknown option " + f);
    }
    ConvertSummary s = convert_model(argv[2], argv[3], o);
    std::printf("{\"tensor_count\":%lld,\"bytes_in\":%lld,\"bytes_out\":%lld,\"tensors_by_type\":{",
                (long long)s.tensor_count, (long long)s.bytes_in, (long long)s.bytes_out);
    bool first = true;
    for (auto& kv : s.tensors_by_type) {
      std::printf("%s%s:%lld", first ? "" : ",", jstr(kv.first).c_str(), (long long)kv.second);
      first = false;
    }
    std::printf("}}\n");
    return 0;
  }
  if (cmd == "compare") {
    if (argc < 4) throw Error(ErrorCode::InvalidArgument, "compare A B [--tol TYPE=x]");
    std::map<std::string, double> tol = {{"f32", 1e-6}, {"f16", 1e-3}, {"bf16", 8e-3}, {"q8_0", 1e-2},
                                         {"q5_0", 7e-2}, {"q5_1", 6e-2}, {"q4_0", 0.15}, {"q4_1", 0.15},
                                         {"q4_K", 0.12}, {"q5_K", 6e-2}, {"q6_K", 3e-2}, {"i32", 0}};
    for (int i = 4; i + 1 < argc; i += 2)
      if (std::string(argv[i]) == "--tol") {
        std::string s = argv[i + 1];
        size_t eq = s.find('=');
        if (eq != std::string::npos) tol[s.substr(0, eq)] = std::atof(s.c_str() + eq + 1);
      }
    auto a = WeightFile::open(argv[2]);
    auto b = WeightFile::open(argv[3]);
    std::map<std::string, double> worst;
    std::vector<std::string> problems;
    if (a->names() != b->names()) {
      for (auto& n : a->names())
        if (!b->has(n)) problems.push_back("missing in B: " + n);
      for (auto& n : b->names())
        if (!a->has(n)) problems.push_back("missing in A: " + n);
    }
    for (auto& n : a->names()) {
      if (!b->has(n)) continue;
      const Tensor& x = a->get(n);
      const Tensor& y = b->get(n);
      if (x.sizes() != y.sizes()) {
        problems.push_back("shape differs: " + n + " " + x.shape_str() + " vs " + y.shape_str());
        continue;
      }
      Tensor fx = x.to_f32(), fy = y.to_f32();
      double maxabs = 0, maxerr = 0;
      for (int64_t k = 0; k < fx.numel(); ++k) {
        maxabs = std::fmax(maxabs, std::fabs((double)fx.f32()[k]));
        double e = std::fabs((double)fx.f32()[k] - (double)fy.f32()[k]);
        if (!(e <= maxerr)) maxerr = e;
      }
      double rel = maxabs > 0 ? maxerr / maxabs : maxerr;
      std::string t = dtype_name(y.dtype);
      if (!(rel <= worst[t])) worst[t] = rel;
      auto it = tol.find(t);
      double lim = it == tol.end() ? 0.2 : it->second;
      if (!(rel <= lim)) problems.push_back("error too large: " + n + " " + t + " rel " + std::to_string(rel));
    }
    std::printf("{\"tensors\":%zu,\"worst\":{", a->names().size());
    bool first = true;
    for (auto& kv : worst) {
      std::printf("%s%s:%.6g", first ? "" : ",", jstr(kv.first).c_str(), kv.second);
      first = false;
    }
    std::printf("},\"problems\":[");
    for (size_t i = 0; i < problems.size() && i < 50; ++i) std::printf("%s%s", i ? "," : "", jstr(problems[i]).c_str());
    std::printf("]}\n");
    return problems.empty() ? 0 : 1;
  }
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "ERROR %s: %s\n", error_code_name(e.code()), e.what());
    return 2;
  }
}
