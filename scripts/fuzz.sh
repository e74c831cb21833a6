#!/usr/bin/env bash
# Builds the libFuzzer targets in native/fuzz/ (clang, -fsanitize=fuzzer,address,undefined; outside the main CMake
# build, which never needs clang) and runs each for DURATION seconds (default 60).
#   scripts/fuzz.sh [DURATION] [TARGET...]      TARGET: safetensors gguf json ckpt model adapters (default: all)
# `model` goes past the parsers: format sniffing, name mapping, detection and the load-time shape validation of
# every network (native/fuzz/fuzz_model_body.h); `adapters` reads LoRA and textual-inversion embedding files and
# matches them against tiny SD 1.x / SDXL weights (native/fuzz/fuzz_adapters_body.h). Both link the whole engine,
# built here with the same sanitizers.
# Corpora live in build-fuzz/corpus/<target>/ (seeded from test/fixtures/fuzz-seeds/<target>/); crashing inputs are
# written to build-fuzz/artifacts/<target>/. Copy each into test/fixtures/fuzz-regressions/<target>/ after fixing the
# bug: the native test formats.fuzz_regressions_replay replays them.
# Needs clang with the fuzzer runtime (Debian/Ubuntu: apt-get install -y clang libclang-rt-14-dev).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
duration="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors gguf json ckpt model adapters)
CXX="${CXX_FUZZ:-clang++}"
if ! command -v "$CXX" > /dev/null; then
  echo "fuzz.sh: $CXX not found (install clang and its fuzzer runtime, e.g. apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 2
fi
out="$root/build-fuzz"
mkdir -p "$out"
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$root/native" -I"$root/native/include")
lib_src=("$root/native/formats/json.cpp" "$root/native/formats/safetensors.cpp" "$root/native/formats/gguf.cpp"
         "$root/native/formats/names.cpp" "$root/native/formats/mapped_file.cpp" "$root/native/formats/files.cpp" "$root/native/formats/ckpt.cpp" "$root/native/core/dtype.cpp"
         "$root/native/core/error.cpp")
status=0
for t in "${targets[@]}"; do
  echo "== building fuzz_$t"
  if [ "$t" = model ] || [ "$t" = adapters ]; then
    # the engine as a library instrumented for the fuzzer (no fuzzer main in it), then the target against it
    cmake -S "$root" -B "$out/engine" -DCMAKE_CXX_COMPILER="$CXX" -DSDN_BUILD_ADDON=OFF -DSDN_BUILD_TOOLS=OFF \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-g -O1 -fno-omit-frame-pointer" \
      -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" > "$out/engine.log"
    cmake --build "$out/engine" --target sdn_engine --parallel >> "$out/engine.log"
    "$CXX" "${flags[@]}" "$root/native/fuzz/fuzz_$t.cpp" "$out/engine/libsdn_engine.a" -ldl -lpthread -o "$out/fuzz_$t"
  else
    "$CXX" "${flags[@]}" "$root/native/fuzz/fuzz_$t.cpp" "${lib_src[@]}" -o "$out/fuzz_$t"
  fi
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  seeds="$root/test/fixtures/fuzz-seeds/$t"
  regress="$root/test/fixtures/fuzz-regressions/$t"
  dirs=("$out/corpus/$t")
  [ -d "$seeds" ] && dirs+=("$seeds")
  [ -d "$regress" ] && dirs+=("$regress")
  echo "== running fuzz_$t for ${duration}s"
  # -max_len per format: whole model files need room for tensor data; the parsers' interesting bytes are headers
  case "$t" in model) max_len=65536 ;; gguf|safetensors|adapters) max_len=16384 ;; ckpt) max_len=8192 ;; *) max_len=4096 ;; esac
  if ! ASAN_OPTIONS=allocator_may_return_null=0:detect_leaks=1 "$out/fuzz_$t" -max_total_time="$duration" -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -max_len="$max_len" -timeout=10 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" "${dirs[@]}" \
      2> "$out/fuzz_$t.log"; then
    echo "fuzz_$t: FOUND A PROBLEM, see $out/fuzz_$t.log and $out/artifacts/$t/" >&2
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|^Done|ERROR" "$out/fuzz_$t.log" || true
done
exit $status
