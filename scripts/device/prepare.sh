#!/usr/bin/env bash
# Fills .device-carry/ (gitignored) with what scripts/device/gpu_bench.py needs on the GPU machine, which reaches no
# package registry and has no glslc, Vulkan headers or node: run it HERE, in the checkout that the device tool sends
# (the session's own checkout), then call the tool with carry [".device-carry"] (see docs/benchmarks.md).
#
#   scripts/device/prepare.sh [--sdcpp DIR] [--shared DIR]
#
#   .device-carry/sdcpp/   stable-diffusion.cpp source (default /work/ext/sdcpp: 97d2990 + ggml 8e800ce), without
#                          .git, build folders, assets, docs, tests and ggml's examples (a copy, never committed)
#   .device-carry/debs/    Debian packages unpacked there (bookworm/ and trixie/): glslc + libshaderc1 (shader
#                          compiler for both engines' Vulkan builds), libvulkan-dev (headers), libvulkan1 (the
#                          loader), spirv-headers (ggml's Vulkan build asks for its CMake package)
#   .device-carry/bin/     sdn_bench_sd built here with the Vulkan backend (used there only when building ours
#                          there fails)
#   .device-carry/gen/     the random-checkpoint generators of ../shared/golden (make_random_sd15.py,
#                          make_random_sd.py; python3 + numpy there); the CLIP merges travel in data/
# Checks that the whole carry stays under the tool's 64 MiB limit (the working tree counts too).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
sdcpp=/work/ext/sdcpp
shared="$root/../shared"
while [ $# -gt 0 ]; do
  case "$1" in
    --sdcpp) sdcpp="$2"; shift 2 ;;
    --shared) shared="$2"; shift 2 ;;
    *) echo "unknown option $1 (use --sdcpp DIR, --shared DIR)" >&2; exit 2 ;;
  esac
done
carry="$root/.device-carry"
[ -f "$sdcpp/CMakeLists.txt" ] && [ -d "$sdcpp/ggml/src" ] || { echo "no stable-diffusion.cpp source at $sdcpp (--sdcpp DIR)" >&2; exit 2; }
rm -rf "$carry"
mkdir -p "$carry/sdcpp" "$carry/debs" "$carry/bin" "$carry/gen"

# stable-diffusion.cpp: what its CMake build of sd-cli reads
( cd "$sdcpp" && tar cf - --exclude=.git --exclude='./build*' --exclude=./assets --exclude=./docs --exclude=./docker \
    --exclude=./ggml/examples --exclude=./ggml/tests --exclude=./ggml/docs --exclude='*.png' --exclude='*.jpg' . ) |
  ( cd "$carry/sdcpp" && tar xf - )
( cd "$sdcpp" && { git rev-parse --short HEAD 2>/dev/null || echo unknown; } ) > "$carry/sdcpp/SDNODE-COPY-OF"

# Debian packages for the Vulkan builds there, from this machine's release (bookworm) and from the next (trixie):
# ggml 8e800ce needs Vulkan headers newer than bookworm's 1.3.239 (VK_EXT_layer_settings), and only trixie's glslc
# (2025.2) compiles ggml's cooperative-matrix shaders; that glslc needs glibc 2.38, so the bookworm one is the
# fallback there. The trixie package lists go to a private folder (the machine's apt configuration is untouched),
# from the mirror this machine's apt sources name.
pkgs="glslc libshaderc1 libvulkan-dev libvulkan1 spirv-headers"
mkdir -p "$carry/debs/bookworm" "$carry/debs/trixie"
( cd "$carry/debs/bookworm" && apt-get download $pkgs >/dev/null 2>&1 ) ||
  echo "warning: apt-get download failed (run apt-get update first?): no bookworm Vulkan tools carried" >&2
T="$(mktemp -d)"
uri="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[ -z "$uri" ] && uri="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
if [ -n "$uri" ]; then
  mkdir -p "$T/lists/partial" "$T/cache/archives/partial" "$T/parts"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" > "$T/parts/trixie.sources"
  o="-oDir::Etc::SourceList=/dev/null -oDir::Etc::SourceParts=$T/parts -oDir::State::Lists=$T/lists -oDir::Cache=$T/cache"
  ( apt-get $o update >/dev/null 2>&1 && cd "$carry/debs/trixie" && apt-get $o download $pkgs >/dev/null 2>&1 ) ||
    echo "warning: the trixie packages could not be downloaded: stable-diffusion.cpp's Vulkan build will fail there" >&2
fi
rm -rf "$T"

# our benchmark program, built here (fallback there)
if [ -x "$root/build/bin/sdn_bench_sd" ]; then
  cp "$root/build/bin/sdn_bench_sd" "$carry/bin/" && strip "$carry/bin/sdn_bench_sd" 2>/dev/null || true
else
  echo "note: build/bin/sdn_bench_sd missing (npm run build:native): no prebuilt fallback carried" >&2
fi

# model generators (shared reference material: carried, never committed)
for f in make_random_sd15.py make_random_sd.py; do
  [ -f "$shared/golden/$f" ] && cp "$shared/golden/$f" "$carry/gen/" || echo "note: $shared/golden/$f missing" >&2
done

carry_kb=$(du -sk "$carry" | cut -f1)
tree_kb=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_kb=$((carry_kb + tree_kb))
echo "prepared $carry: $((carry_kb / 1024)) MiB carried + $((tree_kb / 1024)) MiB working tree = $((total_kb / 1024)) MiB (limit 64 MiB)"
du -sh "$carry"/* | sed 's/^/  /'
if [ "$total_kb" -gt $((62 * 1024)) ]; then
  echo "too large for the device tool (64 MiB with the working tree)" >&2
  exit 1
fi
