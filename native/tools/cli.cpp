// sdn_cli: command-line txt2img over the public C++ API (used by the golden-image tests).
//   sdn_cli generate --model FILE --prompt TEXT [--negative TEXT] [--width N] [--height N] [--steps N]
//                    [--cfg X] [--sampler NAME] [--scheduler NAME] [--seed N] [--rng cuda|cpu] [--clip-skip N]
//                    [--batch N] [--threads N] [--weight-type T] [--tokenizer MERGES] --output OUT.png
//                    [--device auto|cpu|vulkan|vulkan:N] [--vram-budget MIB]
//   sdn_cli devices   lists the devices (id, usable, type, name, reason; tab-separated)
//   Separate parts: --unet FILE --vae FILE --text-encoder FILE (each overrides that part of --model, if given).
//   img2img / inpainting: --init-img PNG [--strength X] [--mask PNG] (8-bit PNGs of exactly --width x --height);
//   --taesd FILE decodes with TAESD instead of the VAE (stable-diffusion.cpp's flag names).
// Adapters: [--lora-model-dir DIR] (for <lora:NAME:W> in the prompt) [--control-net FILE --control-image PNG
//   [--control-strength X]] [--embd-dir DIR] (textual-inversion embeddings used by name).
// With --batch N > 1 the images are written as OUT-0.png, OUT-1.png, ...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "png_read.h"
#include "png_write.h"
#include "sdn/sdn.h"

static void usage() {
  std::fprintf(stderr,
               "usage: sdn_cli generate --model FILE --prompt TEXT --output OUT.png [--negative TEXT] [--width N]\n"
               "         [--unet FILE] [--vae FILE] [--text-encoder FILE]\n"
               "         [--height N] [--steps N] [--cfg X] [--sampler NAME] [--scheduler NAME] [--seed N]\n"
               "         [--rng cuda|cpu] [--clip-skip N] [--batch N] [--threads N] [--weight-type T]\n"
               "         [--tokenizer MERGES] [--prediction eps|v] [--init-img PNG] [--mask PNG] [--strength X]\n"
               "         [--taesd FILE] [--device auto|cpu|vulkan|vulkan:N] [--vram-budget MIB] [--vae-tiling] [--quiet]\n"
               "         [--lora-model-dir DIR] [--control-net FILE --control-image PNG [--control-strength X]]\n"
               "         [--embd-dir DIR]\n"
               "       sdn_cli devices\n"
               "  width/height: multiples of 64 (SD 1.x/2.x) or 32 (SDXL); --clip-skip 0 = the model's default\n");
}

// sdn_cli devices: one line per device of every compiled-in backend, tab-separated:
// id, usable (1/0), type, name, reason (tests use it to pick the devices to run on).
static int list_devices_cmd() {
  sdn::SystemInfo si = sdn::system_info();
  for (const sdn::DeviceInfo& d : si.devices)
    std::printf("%s\t%d\t%s\t%s\t%s\n", d.id.c_str(), d.usable ? 1 : 0, d.type.c_str(), d.name.c_str(),
                d.unusable_reason.c_str());
  for (const std::string& n : si.backend_notes) std::printf("#\t%s\n", n.c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "devices") == 0) return list_devices_cmd();
  if (argc < 2 || std::strcmp(argv[1], "generate") != 0) {
    usage();
    return 2;
  }
  sdn::GenerateParams p;
  p.control_net.strength = 0.9f;  // stable-diffusion.cpp's --control-strength default
  sdn::LoadOptions lo;
  std::string model, output;
  sdn::ModelParts parts;
  bool quiet = false;
  std::string init_img, mask;
  try {
    for (int i = 2; i < argc; ++i) {
      std::string a = argv[i];
      auto val = [&]() -> std::string {
        if (i + 1 >= argc) throw sdn::Error(sdn::ErrorCode::InvalidArgument, a + " needs a value");
        return argv[++i];
      };
      if (a == "--model") model = val();
      else if (a == "--unet") parts.unet = val();
      else if (a == "--vae") parts.vae = val();
      else if (a == "--text-encoder") parts.text_encoder = val();
      else if (a == "--prompt") p.prompt = val();
      else if (a == "--negative") p.negative_prompt = val();
      else if (a == "--width") p.width = std::atoi(val().c_str());
      else if (a == "--height") p.height = std::atoi(val().c_str());
      else if (a == "--steps") p.steps = std::atoi(val().c_str());
      else if (a == "--cfg") p.cfg_scale = std::strtof(val().c_str(), nullptr);
      else if (a == "--sampler") p.sampler = val();
      else if (a == "--scheduler") p.scheduler = val();
      else if (a == "--seed") p.seed = std::strtoll(val().c_str(), nullptr, 10);
      else if (a == "--rng") p.rng = val();
      else if (a == "--clip-skip") p.clip_skip = std::atoi(val().c_str());
      else if (a == "--batch") p.batch_count = std::atoi(val().c_str());
      else if (a == "--threads") lo.threads = std::atoi(val().c_str());
      else if (a == "--weight-type") lo.weight_type = val();
      else if (a == "--tokenizer") lo.tokenizer_path = val();
      else if (a == "--device") lo.device = val();
      else if (a == "--vram-budget") {
        std::string v = val();
        char* end = nullptr;
        double mb = std::strtod(v.c_str(), &end);
        if (v.empty() || *end || !(mb > 0))
          throw sdn::Error(sdn::ErrorCode::InvalidArgument, "--vram-budget takes a size in MiB, e.g. 4096");
        lo.vram_budget = (uint64_t)(mb * 1024 * 1024);
      }
      else if (a == "--prediction") lo.prediction = val();
      else if (a == "--vae-tiling") lo.vae_tiling = "on";
      else if (a == "--init-img" || a == "-i") init_img = val();
      else if (a == "--mask") mask = val();
      else if (a == "--strength") p.strength = std::strtof(val().c_str(), nullptr);
      else if (a == "--taesd") {
        lo.taesd_path = val();
        p.decoder = "taesd";
      }
      else if (a == "--output") output = val();
      else if (a == "--lora-model-dir") p.lora_dir = val();
      else if (a == "--embd-dir") p.embedding_dir = val();
      else if (a == "--control-net") p.control_net.model = val();
      else if (a == "--control-strength") p.control_net.strength = std::strtof(val().c_str(), nullptr);
      else if (a == "--control-image") {
        std::string err, path = val();
        if (!sdntool::read_png(path, 3, p.control_net.image_rgb, p.control_net.image_width,
                               p.control_net.image_height, err))
          throw sdn::Error(sdn::ErrorCode::InvalidArgument, "--control-image: " + err);
      }
      else if (a == "--quiet") quiet = true;
      else throw sdn::Error(sdn::ErrorCode::InvalidArgument, "unknown option " + a);
    }
    parts.file = model;
    if ((model.empty() && parts.unet.empty()) || output.empty())
      throw sdn::Error(sdn::ErrorCode::InvalidArgument, "--model (or --unet/--vae/--text-encoder) and --output are required");
    auto read = [&](const std::string& path, int channels, sdn::Image& img, const char* flag) {
      std::string err;
      if (!sdntool::read_png(path, channels, img.data, img.width, img.height, err))
        throw sdn::Error(sdn::ErrorCode::InvalidArgument, std::string(flag) + ": " + err);
      img.channels = channels;
    };
    if (!init_img.empty()) read(init_img, 3, p.init_image, "--init-img");
    if (!mask.empty()) read(mask, 1, p.mask, "--mask");
    sdn::validate_params(p);
    auto t0 = std::chrono::steady_clock::now();
    auto m = sdn::Model::load(parts, lo);
    auto t1 = std::chrono::steady_clock::now();
    if (!quiet) std::fprintf(stderr, "device: %s\n", m->device().c_str());
    sdn::GenerateCallbacks cb;
    if (!quiet)
      cb.on_progress = [&](const sdn::Progress& pr) {
        const char* ph = pr.phase == sdn::Phase::Encode ? "encode" : pr.phase == sdn::Phase::Sample ? "sample" : "decode";
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        std::fprintf(stderr, "[%7.2fs] %s %d/%d (image %d/%d)\n", s, ph, pr.step, pr.steps, pr.image + 1, pr.images);
      };
    auto images = m->generate(p, cb);
    auto t2 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < images.size(); ++i) {
      std::string path = output;
      if (images.size() > 1) {
        size_t dot = output.rfind(".png");
        path = (dot == std::string::npos ? output : output.substr(0, dot)) + "-" + std::to_string(i) + ".png";
      }
      if (!sdntool::write_png_rgb(path, images[i].data.data(), images[i].width, images[i].height)) {
        std::fprintf(stderr, "error: cannot write %s\n", path.c_str());
        return 1;
      }
      if (!quiet) std::fprintf(stderr, "wrote %s (seed %lld)\n", path.c_str(), (long long)images[i].seed);
    }
    if (!images.empty()) {
      for (const auto& w : images[0].warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
      if (images[0].adapter_bytes && !quiet)
        std::fprintf(stderr, "LoRA weights merged: %.1f MB added\n", images[0].adapter_bytes / 1e6);
    }
    if (!quiet)
      std::fprintf(stderr, "load %.2fs, generate %.2fs\n", std::chrono::duration<double>(t1 - t0).count(),
                   std::chrono::duration<double>(t2 - t1).count());
  } catch (const sdn::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", sdn::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
