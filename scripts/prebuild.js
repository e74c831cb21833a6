#!/usr/bin/env node
// npm run prebuilds: builds the addon (cmake-js, Release) and stores it as prebuilds/<platform>-<arch>/sdnode.napi.node,
// the layout node-gyp-build loads first (N-API: one binary per platform/arch serves every Node version >= 18).
// Run it on each target platform (or in CI per platform) before `npm publish`; the package ships prebuilds/.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { buildNative } = require('./build.js');

const root = path.resolve(__dirname, '..');
buildNative();
const built = path.join(root, 'build', 'Release', 'sdnode.node');
if (!fs.existsSync(built)) {
  console.error(`prebuild: ${built} was not produced`);
  process.exit(1);
}
const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const out = path.join(dir, 'sdnode.napi.node');
fs.copyFileSync(built, out);
if (process.platform !== 'win32') {
  const strip = spawnSync('strip', [process.platform === 'darwin' ? '-x' : '--strip-unneeded', out], { stdio: 'inherit' });
  if (strip.error) console.warn(`prebuild: strip not available (${strip.error.message}); keeping symbols`);
}
console.log(`prebuild: ${path.relative(root, out)} (${(fs.statSync(out).size / 1e6).toFixed(1)} MB)`);
