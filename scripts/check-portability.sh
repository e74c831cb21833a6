#!/usr/bin/env bash
# Portability check (not part of `npm test`: emulation is slow). Proves that
#  1. the x86-64 build carries no AVX/AVX-512/BMI instruction outside the per-ISA kernel namespaces, so one binary
#     runs on any x86-64 CPU;
#  2. the same x86-64 test binary passes when the CPU reports only AVX2 (qemu -cpu Haswell) or only SSE2
#     (qemu -cpu qemu64): run-time dispatch then picks avx2 / scalar;
#  3. the engine cross-compiles for ARM64 and its native tests pass there (qemu-aarch64).
# Needs Debian packages: qemu-user g++-aarch64-linux-gnu (installed when missing, as root).
# Usage: scripts/check-portability.sh [TEST_FILTER]    (default: every native test)
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
args=()
[ -n "$filter" ] && args=(--filter "$filter")

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq qemu-user g++-aarch64-linux-gnu >/dev/null
fi

[ -x build/bin/sdn_tests ] || npm run build:native

echo "== 1. instructions beyond SSE2 outside sdn::cpu::{avx2,avx512}"
leaks=0
for f in build/bin/sdn_tests build/Release/sdnode.node; do
  [ -f "$f" ] || continue
  n=$(objdump -d --no-show-raw-insn -C "$f" |
    awk '/^[0-9a-f]+ </{cur=$0} /^ +[0-9a-f]+:\t(v[a-z0-9]+|kmov[a-z]|andn|bextr|shlx|shrx|sarx|tzcnt|lzcnt|popcnt|pdep|pext) /{ if (cur !~ /avx512::|avx2::/) print cur}' |
    sort -u | tee /dev/stderr | wc -l)
  echo "$f: $n functions"
  leaks=$((leaks + n))
done
[ "$leaks" -eq 0 ] || { echo "FAIL: ISA-specific code outside the dispatched kernels"; exit 1; }

for cpu in Haswell qemu64; do
  echo "== 2. x86-64 tests with -cpu $cpu"
  SDNODE_SHARED_DIR=${SDNODE_SHARED_DIR:-$(cd .. && pwd)/shared} qemu-x86_64 -cpu "$cpu" build/bin/sdn_tests "${args[@]}" 2>/dev/null | tail -1
done

echo "== 3. ARM64 cross build + tests under qemu-aarch64"
cmake -S . -B build-arm64 -DSDN_BUILD_ADDON=OFF -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc >/dev/null
cmake --build build-arm64 --target sdn_tests -j"$(nproc)" >/dev/null
SDNODE_SHARED_DIR=${SDNODE_SHARED_DIR:-$(cd .. && pwd)/shared} qemu-aarch64 -L /usr/aarch64-linux-gnu build-arm64/bin/sdn_tests "${args[@]}" | tail -1
