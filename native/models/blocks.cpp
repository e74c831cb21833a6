#include "models/blocks.h"

#include "sdn/error.h"

namespace sdn {

Tensor conv(WeightStore& w, const std::string& p, const Tensor& x, int stride, int pad) {
  const Tensor& wt = w.get(p + ".weight");
  const Tensor* b = w.get_opt(p + ".bias");
  if (wt.ndim != 4 || wt.shape[1] != x.shape[1])
    throw_error(ErrorCode::InvalidFile, p + ".weight has shape " + wt.shape_str() + " but the input has " +
                                            std::to_string(x.shape[1]) + " channels");
  return w.backend().conv2d(x, wt, b, stride, pad);
}

Tensor linear(WeightStore& w, const std::string& p, const Tensor& x) {
  const Tensor& wt = w.get(p + ".weight");
  const Tensor* b = w.get_opt(p + ".bias");
  if (wt.ndim != 2 || wt.shape[1] != x.shape[x.ndim - 1])
    throw_error(ErrorCode::InvalidFile, p + ".weight has shape " + wt.shape_str() + " but the input has " +
                                            std::to_string(x.shape[x.ndim - 1]) + " features");
  return w.backend().linear(x, wt, b);
}

Tensor group_norm(WeightStore& w, const std::string& p, const Tensor& x, float eps, bool silu) {
  const Tensor& g = w.get(p + ".weight");
  const Tensor& b = w.get(p + ".bias");
  if (x.shape[1] % 32 != 0)
    throw_error(ErrorCode::Unsupported, p + ": GroupNorm(32) over " + std::to_string(x.shape[1]) +
                                            " channels (not a multiple of 32)");
  return w.backend().group_norm(x, 32, eps, &g, &b, silu);
}

Tensor layer_norm(WeightStore& w, const std::string& p, const Tensor& x, float eps) {
  const Tensor& g = w.get(p + ".weight");
  const Tensor& b = w.get(p + ".bias");
  return w.backend().layer_norm(x, eps, &g, &b);
}

int count_indexed(const WeightStore& w, const std::string& prefix, const std::string& suffix) {
  int n = 0;
  while (w.has(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

Tensor batch_slice(const Tensor& x, int64_t b0, int64_t b1) { return x.slice0(b0, b1); }

}  // namespace sdn
