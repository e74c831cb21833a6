// sdnode addon: the native half of lib/model.ts. One Model wrapper owns one engine model and one Worker thread;
// load, generate and dispose are tasks run in order on that thread (see worker.h for why a dedicated thread).
#pragma once
#include <napi.h>

#include <memory>

#include "sdn/sdn.h"
#include "worker.h"

namespace sdnaddon {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  ~ModelWrap() override;

 private:
  struct State {
    std::unique_ptr<sdn::Model> model;  // touched only on the worker thread
  };

  // load(pathOrParts, {threads, weightType, tokenizerPath}, onProgress(fraction) | null, abortHandle | null)
  Napi::Value load(const Napi::CallbackInfo& info);
  // loadFake({loadMs, encodeMs, stepMs, decodeMs, scratchBytes}, onProgress | null, abortHandle | null): test double
  Napi::Value load_fake(const Napi::CallbackInfo& info);
  // generate(params, onProgress(event) | null, onPreview(event) | null, abortHandle | null) -> Promise<Image[]>
  Napi::Value generate(const Napi::CallbackInfo& info);
  // dispose() -> Promise<void>: frees the engine model after the calls already queued have ended.
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);

  using Maker = std::function<std::unique_ptr<sdn::Model>(std::function<bool(float)> on_progress)>;
  Napi::Value start_load(const Napi::CallbackInfo& info, Maker make, const Napi::Value& on_progress,
                         const Napi::Value& abort);
  // A rejected promise when the model cannot take this call now (disposed, not loaded); empty otherwise.
  Napi::Value refuse(Napi::Env env, const char* what, bool needs_loaded);

  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::unique_ptr<Worker> worker_ = std::make_unique<Worker>();
  bool disposed_ = false;
  bool load_started_ = false;
  bool loaded_ = false;
  int64_t external_bytes_ = 0;  // reported to V8 with AdjustExternalMemory
};

}  // namespace sdnaddon
