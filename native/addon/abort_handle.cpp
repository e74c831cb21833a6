#include "abort_handle.h"

namespace sdnaddon {

Napi::Function AbortHandle::define(Napi::Env env) {
  return DefineClass(env, "AbortHandle",
                     {InstanceMethod<&AbortHandle::abort>("abort"), InstanceAccessor<&AbortHandle::aborted>("aborted")});
}

AbortHandle::AbortHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AbortHandle>(info) {}

Napi::Value AbortHandle::abort(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value AbortHandle::aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }

}  // namespace sdnaddon
