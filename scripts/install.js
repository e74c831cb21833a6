#!/usr/bin/env node
// npm install hook: use a prebuilt binary (prebuilds/) if one loads, otherwise build the addon from source with
// cmake-js: only the addon and what it links (not the native test runner or the benchmarks; `npm test` builds
// those). Prints what to install when the compiler or cmake is missing. `npm rebuild sdnode --build-from-source`
// (or SDNODE_FORCE_BUILD=1) builds even when a prebuilt binary loads.
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

const fromSource =
  process.env.SDNODE_FORCE_BUILD === '1' ||
  process.env.npm_config_build_from_source === 'true' ||
  process.env.npm_config_build_from_source === 'sdnode';
if (!fromSource && loads()) {
  process.exit(0);
}
const { buildNative } = require('./build.js');
try {
  buildNative({ quiet: false, target: 'sdnode' });
} catch (err) {
  console.error(`\nsdnode: ${err.message}\n`);
  process.exit(1);
}
