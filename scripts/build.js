#!/usr/bin/env node
// Builds everything the tests need: the native engine, addon, test runner and bench CLI (cmake-js, incremental),
// and the TypeScript in lib/ (tsc -> dist/). `--native-only` skips TypeScript.
// buildNative({ target: 'sdnode' }) builds only the addon and what it links (the install path: scripts/install.js).
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function which(cmd) {
  const r = spawnSync(process.platform === 'win32' ? 'where' : 'which', [cmd], { encoding: 'utf8' });
  return r.status === 0;
}

function checkToolchain() {
  const missing = [];
  if (!which('cmake')) missing.push('cmake (>= 3.16)');
  if (!which('c++') && !which('g++') && !which('clang++') && process.platform !== 'win32') missing.push('a C++17 compiler (g++ or clang++)');
  if (missing.length) {
    const hint =
      process.platform === 'darwin'
        ? 'Install the Xcode command line tools (xcode-select --install) and cmake (brew install cmake).'
        : process.platform === 'win32'
          ? 'Install Visual Studio Build Tools (C++ workload) and cmake.'
          : 'On Debian/Ubuntu: sudo apt-get install -y cmake g++ ; on Fedora: sudo dnf install cmake gcc-c++.';
    throw new Error(
      `no prebuilt binary matches this platform (${process.platform}-${process.arch}, Node ${process.versions.node}), ` +
        `and building from source needs ${missing.join(' and ')}, which ${missing.length > 1 ? 'are' : 'is'} not installed.\n${hint}\nThen run: npm rebuild sdnode`,
    );
  }
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: opts.quiet ? 'pipe' : 'inherit', encoding: 'utf8', env: process.env });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    const out = opts.quiet ? `\n${r.stdout}\n${r.stderr}` : '';
    throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}${out}`);
  }
}

/**
 * Builds with cmake-js into `out` (default build/). `target`: one CMake target (e.g. 'sdnode', the addon) instead
 * of all. `defines`: extra -D settings (e.g. a cross compiler). Every build uses the same CMake options, so the
 * addon of an install, of `npm test` and of `npm run prebuilds` hold the same backends.
 */
function buildNative({ quiet = false, target, out, defines = [] } = {}) {
  checkToolchain();
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(Math.max(1, require('os').availableParallelism ? require('os').availableParallelism() : require('os').cpus().length));
  const args = [cmakeJs, 'build', '--parallel', jobs, '--CDCMAKE_BUILD_TYPE=Release'];
  if (target) args.push('--target', target);
  if (out) args.push('--out', out);
  for (const d of defines) args.push(`--CD${d}`);
  if (process.env.SDN_CMAKE_ARGS) for (const a of process.env.SDN_CMAKE_ARGS.split(/\s+/).filter(Boolean)) args.push(`--CD${a}`);
  run(process.execPath, args, { quiet });
}

function buildTs() {
  const tsc = require.resolve('typescript/bin/tsc');
  run(process.execPath, [tsc, '-p', 'tsconfig.json']);
  // the `sdnode` bin must be executable when run from a clone (npm sets the bit itself when it installs a package)
  const cli = path.join(root, 'dist', 'cli', 'cli.js');
  if (fs.existsSync(cli) && process.platform !== 'win32') fs.chmodSync(cli, 0o755);
}

module.exports = { buildNative, buildTs };

if (require.main === module) {
  const nativeOnly = process.argv.includes('--native-only');
  try {
    buildNative();
    if (!nativeOnly && fs.existsSync(path.join(root, 'node_modules', 'typescript'))) buildTs();
  } catch (err) {
    console.error(`\nsdnode build: ${err.message}\n`);
    process.exit(1);
  }
}
