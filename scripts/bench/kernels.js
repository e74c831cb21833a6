#!/usr/bin/env node
// npm run bench:kernels -- runs build/bin/sdn_bench_kernels (native/tools/bench_kernels.cpp) and prints its output:
// the measured FP32 FMA peak, linear (GEMM) GFLOP/s for the SD shapes and weight types, and conv2d 3x3 effective
// GFLOP/s, each as a percentage of that peak. Extra arguments are passed through (--quick, --threads N, --reps N).
// Builds the native code first if the binary is missing.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..', '..');
const exe = process.platform === 'win32' ? 'sdn_bench_kernels.exe' : 'sdn_bench_kernels';
const bin = path.join(root, 'build', 'bin', exe);

if (!fs.existsSync(bin)) {
  console.log('sdn_bench_kernels not built yet: running the native build');
  const b = spawnSync(process.execPath, [path.join(root, 'scripts', 'build.js'), '--native-only'], { stdio: 'inherit' });
  if (b.status !== 0) process.exit(b.status || 1);
}
const r = spawnSync(bin, process.argv.slice(2), { stdio: 'inherit' });
if (r.error) {
  console.error(`could not run ${bin}: ${r.error.message}`);
  process.exit(1);
}
process.exit(r.status === null ? 1 : r.status);
