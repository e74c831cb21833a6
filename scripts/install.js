#!/usr/bin/env node
// npm install hook: use a prebuilt binary (prebuilds/) if one loads, otherwise build the addon from source with
// cmake-js. Prints what to install when the compiler or cmake is missing.
'use strict';
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (process.env.SDNODE_FORCE_BUILD !== '1' && loads()) {
  process.exit(0);
}
const { buildNative } = require('./build.js');
try {
  buildNative({ quiet: false });
} catch (err) {
  console.error(`\nsdnode: ${err.message}\n`);
  process.exit(1);
}
