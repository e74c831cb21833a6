// probe_device: creates the backend for one device and checks it with a small computation. The Node package calls
// it in a short-lived child process (lib/device.ts), so that a driver that crashes or hangs here never takes down
// the application.
#include <cmath>
#include <exception>

#include "backends/backend.h"
#include "sdn/sdn.h"

namespace sdn {

std::vector<std::string> compiled_backends() {
  std::vector<std::string> out;
  for (BackendFactory* f : backend_factories()) out.push_back(f->name());
  return out;
}

DeviceProbe probe_device(const std::string& spec) {
  DeviceProbe r;
  r.device = spec;
  try {
    BackendChoice c = create_backend(spec, BackendOptions());
    r.device = c.device;
    DeviceInfo info = c.backend->device_info();
    r.name = info.name;
    r.driver = info.driver;
    // y = x w^T on the device against the same product on the host: a driver that runs but computes garbage fails
    const int64_t M = 4, K = 32, N = 8;
    std::vector<float> xv(M * K), wv(N * K), bv(N);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = (float)((i * 37 % 17) - 8) / 8.0f;
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = (float)((i * 53 % 23) - 11) / 16.0f;
    for (size_t i = 0; i < bv.size(); ++i) bv[i] = (float)i / 4.0f;
    Tensor x = c.backend->upload(Tensor::from_vector({M, K}, xv));
    Tensor w = c.backend->prepare_weight(Tensor::from_vector({N, K}, wv));
    Tensor b = c.backend->prepare_weight(Tensor::from_vector({N}, bv));
    Tensor y = c.backend->to_host(c.backend->linear(x, w, &b));
    c.backend->synchronize();
    if (y.numel() != M * N) {
      r.reason = "the test computation returned " + std::to_string(y.numel()) + " values instead of " +
                 std::to_string(M * N);
      return r;
    }
    Tensor yf = y.to_f32();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double ref = bv[n];
        for (int64_t k = 0; k < K; ++k) ref += (double)xv[m * K + k] * wv[n * K + k];
        double got = yf.f32()[m * N + n];
        if (!(std::fabs(got - ref) <= 1e-2 * (1.0 + std::fabs(ref)))) {
          r.reason = "the test computation gave wrong results (y[" + std::to_string(m) + "," + std::to_string(n) +
                     "] = " + std::to_string(got) + ", expected " + std::to_string(ref) + ")";
          return r;
        }
      }
    r.ok = true;
  } catch (const std::exception& e) {
    r.reason = e.what();
  }
  return r;
}

}  // namespace sdn
