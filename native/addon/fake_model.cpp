#include "fake_model.h"

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace sdnaddon {

namespace {

void check(const std::function<bool()>& should_abort) {
  if (should_abort && should_abort()) sdn::throw_error(sdn::ErrorCode::Aborted, "generation aborted");
}

// Sleeps ms in slices, polling the abort callback like the engine does between steps.
void busy(double ms, const std::function<bool()>& should_abort) {
  auto end = std::chrono::steady_clock::now() + std::chrono::microseconds((int64_t)(ms * 1000));
  for (;;) {
    check(should_abort);
    auto now = std::chrono::steady_clock::now();
    if (now >= end) break;
    auto slice = std::min<std::chrono::steady_clock::duration>(end - now, std::chrono::milliseconds(2));
    std::this_thread::sleep_for(slice);
  }
}

class FakeModel : public sdn::Model {
 public:
  explicit FakeModel(const FakeModelOptions& o) : o_(o) {
    info_.path = "fake";
    info_.format = "fake";
    info_.family = "sd1";
    info_.variant = "fake";
    info_.prediction = "eps";
    info_.runnable = true;
    info_.tensor_count = 0;
    info_.size_bytes = 1 << 20;
  }
  const sdn::ModelInfo& info() const override { return info_; }
  std::string device() const override { return "cpu: test model"; }

  std::vector<sdn::Image> generate(const sdn::GenerateParams& p, const sdn::GenerateCallbacks& cb) override {
    sdn::validate_params(p);
    if (p.width % 8 || p.height % 8 || p.width <= 0 || p.height <= 0)
      sdn::throw_error(sdn::ErrorCode::InvalidArgument, "width and height must be positive multiples of 8");
    std::vector<sdn::Image> out;
    std::vector<uint8_t> scratch((size_t)o_.scratch_bytes);
    for (size_t i = 0; i < scratch.size(); i += 4096) scratch[i] = (uint8_t)i;  // touch the pages
    uint32_t ph = 2166136261u;
    for (char c : p.prompt) ph = (ph ^ (uint8_t)c) * 16777619u;
    // Same event sequence as the real pipeline (native/pipeline/pipeline.cpp): encode 0/1, 1/1 once; per image
    // sample 0..steps; then decode img/N -> img+1/N per image.
    auto progress = [&](sdn::Phase ph, int step, int steps, int image) {
      if (!cb.on_progress) return;
      sdn::Progress pr;
      pr.phase = ph;
      pr.step = step;
      pr.steps = steps;
      pr.image = image;
      pr.images = p.batch_count;
      cb.on_progress(pr);
    };
    check(cb.should_abort);
    progress(sdn::Phase::Encode, 0, 1, 0);
    busy(o_.encode_ms, cb.should_abort);
    progress(sdn::Phase::Encode, 1, 1, 0);
    for (int b = 0; b < p.batch_count; ++b) {
      check(cb.should_abort);
      progress(sdn::Phase::Sample, 0, p.steps, b);
      for (int s = 1; s <= p.steps; ++s) {
        busy(o_.step_ms, cb.should_abort);
        progress(sdn::Phase::Sample, s, p.steps, b);
        if (p.preview_every > 0 && cb.on_preview && (s % p.preview_every == 0 || s == p.steps)) {
          sdn::Image prev;
          prev.width = p.width / 8;
          prev.height = p.height / 8;
          prev.data.assign((size_t)prev.width * prev.height * 3, (uint8_t)(s * 255 / p.steps));
          cb.on_preview(s, prev);
        }
      }
    }
    for (int b = 0; b < p.batch_count; ++b) {
      check(cb.should_abort);
      progress(sdn::Phase::Decode, b, p.batch_count, b);
      busy(o_.decode_ms, cb.should_abort);
      sdn::Image img;
      img.width = p.width;
      img.height = p.height;
      img.seed = p.seed + b;
      img.data.resize((size_t)p.width * p.height * 3);
      for (int y = 0; y < p.height; ++y)
        for (int x = 0; x < p.width; ++x) {
          uint8_t* px = &img.data[((size_t)y * p.width + x) * 3];
          px[0] = (uint8_t)(x * 255 / std::max(1, p.width - 1));
          px[1] = (uint8_t)(y * 255 / std::max(1, p.height - 1));
          px[2] = (uint8_t)((img.seed * 37 + ph) & 0xff);
        }
      out.push_back(std::move(img));
      progress(sdn::Phase::Decode, b + 1, p.batch_count, b);
    }
    return out;
  }

 private:
  FakeModelOptions o_;
  sdn::ModelInfo info_;
};

}  // namespace

std::unique_ptr<sdn::Model> make_fake_model(const FakeModelOptions& fo, const sdn::LoadOptions& lo) {
  const int slices = 10;
  for (int i = 1; i <= slices; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds((int64_t)(fo.load_ms * 1000 / slices)));
    if (lo.on_progress && !lo.on_progress((float)i / slices))
      sdn::throw_error(sdn::ErrorCode::Aborted, "model loading aborted");
  }
  return std::make_unique<FakeModel>(fo);
}

}  // namespace sdnaddon
