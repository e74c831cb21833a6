#!/usr/bin/env node
// npm run bench: the kernel benchmark, then the SD1.x pipeline benchmark (each prints its own table).
// Extra arguments go to the pipeline benchmark (e.g. npm run bench -- --sizes 256 --types f16).
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');

for (const [script, args] of [
  ['kernels.js', []],
  ['sd.js', process.argv.slice(2)],
]) {
  const r = spawnSync(process.execPath, [path.join(__dirname, script), ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
