// Building blocks shared by the SD models, written only against Backend (no kernels).
#pragma once
#include <string>

#include "backends/backend.h"
#include "models/weights.h"

namespace sdn {

// y = conv2d(x, P.weight, P.bias) with the given stride and padding.
Tensor conv(WeightStore& w, const std::string& p, const Tensor& x, int stride = 1, int pad = 1);
// y = x @ P.weight^T (+ P.bias if present).
Tensor linear(WeightStore& w, const std::string& p, const Tensor& x);
// GroupNorm(32) with P.weight/P.bias, optional fused SiLU.
Tensor group_norm(WeightStore& w, const std::string& p, const Tensor& x, float eps, bool silu);
Tensor layer_norm(WeightStore& w, const std::string& p, const Tensor& x, float eps);

// Number of consecutive indices i = 0, 1, ... for which a tensor named prefix + i + suffix exists.
int count_indexed(const WeightStore& w, const std::string& prefix, const std::string& suffix);

// Splits a batch-first tensor's first dimension [B, ...] into pieces (views).
Tensor batch_slice(const Tensor& x, int64_t b0, int64_t b1);

}  // namespace sdn
