// sdnode addon: a cancellation flag shared by JavaScript (which sets it) and an engine call (which polls it).
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

namespace sdnaddon {

class AbortHandle : public Napi::ObjectWrap<AbortHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit AbortHandle(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag() const { return flag_; }

 private:
  Napi::Value abort(const Napi::CallbackInfo& info);
  Napi::Value aborted(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace sdnaddon
