#!/usr/bin/env node
// npm run prebuilds: the prebuilt addons the package ships, one per platform, in the layout node-gyp-build loads:
//   prebuilds/linux-x64/sdnode.napi.glibc.node     built here (the same CMake options as any build: every
//                                                  backend the default build compiles is in it)
//   prebuilds/linux-arm64/sdnode.napi.glibc.node   cross-compiled with Debian's g++-aarch64-linux-gnu, then
//                                                  checked under qemu-user: an ARM64 program dlopen()s it (its
//                                                  libraries and static initialisers) and finds the N-API entry
// N-API: one binary per platform serves every Node version >= 18.17 and Electron. The `glibc` tag makes
// node-gyp-build skip them on musl (Alpine), where the install builds from source instead.
//
// Options: --arch x64|arm64|all (default: the host's, plus arm64 on x86-64 Linux), --no-test,
//          --from-build (host only: copy the already built build/Release/sdnode.node instead of building; the
//          package test uses this), --quiet.
// Missing cross tools (g++-aarch64-linux-gnu, qemu-user) are installed with apt-get when run as root; otherwise
// the command to run is printed.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { buildNative } = require('./build.js');

const root = path.resolve(__dirname, '..');
const FILE = 'sdnode.napi.glibc.node';

function has(cmd) {
  return spawnSync('which', [cmd], { encoding: 'utf8' }).status === 0;
}

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: opts.capture ? 'pipe' : 'inherit', env: opts.env || process.env });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})${opts.capture ? `\n${r.stdout}${r.stderr}` : ''}`);
  return r.stdout;
}

function ensureDebianPackages(pkgs, why) {
  const missing = pkgs.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (!missing.length) return;
  if (process.getuid && process.getuid() === 0 && has('apt-get')) {
    console.log(`prebuild: installing ${missing.join(' ')} (${why})`);
    sh('apt-get', ['update', '-qq']);
    sh('apt-get', ['install', '-y', '-qq', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    return;
  }
  throw new Error(`${why} needs ${missing.join(' ')}: sudo apt-get install -y ${missing.join(' ')}`);
}

function store(built, arch, strip) {
  if (!fs.existsSync(built)) throw new Error(`${built} was not produced`);
  const dir = path.join(root, 'prebuilds', `linux-${arch}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.node')) fs.rmSync(path.join(dir, f));
  const out = path.join(dir, FILE);
  fs.copyFileSync(built, out);
  if (has(strip)) sh(strip, ['--strip-unneeded', out]);
  else console.warn(`prebuild: ${strip} not found; keeping symbols`);
  return out;
}

/** Highest GLIBC_/GLIBCXX_ symbol versions a binary needs (what the oldest usable distribution must provide). */
function glibcNeeds(file, readelf) {
  const out = sh(readelf, ['-V', '--wide', file], { capture: true });
  const max = (prefix) => {
    const v = [...out.matchAll(new RegExp(`${prefix}_([0-9.]+)`, 'g'))].map((m) => m[1].split('.').map(Number));
    v.sort((a, b) => a[0] - b[0] || (a[1] || 0) - (b[1] || 0) || (a[2] || 0) - (b[2] || 0));
    return v.length ? `${prefix}_${v[v.length - 1].join('.')}` : `no ${prefix}`;
  };
  return `${max('GLIBC')}, ${max('GLIBCXX')}`;
}

/** The backends a build folder compiled (native/backends/<name>/ sources in its build.ninja / Makefiles). */
function backendsIn(buildDir) {
  const names = new Set();
  for (const f of ['build.ninja', 'CMakeFiles/sdn_engine.dir/build.make']) {
    const file = path.join(buildDir, f);
    if (!fs.existsSync(file)) continue;
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/native\/backends\/([a-z0-9_]+)\/[^\s]*\.cpp/g)) names.add(m[1]);
  }
  return [...names].sort();
}

function testHost(out) {
  const code =
    `const b = require(${JSON.stringify(out)}); const s = b.getSystemInfo();` +
    `if (typeof b.Model !== 'function') throw new Error('not the sdnode addon');` +
    `console.log('loads: engine ' + s.version + ', simd ' + s.simd + ', backends ' + s.backends.join(','));`;
  return sh(process.execPath, ['-e', code], { capture: true }).trim();
}

function testArm64(out) {
  ensureDebianPackages([['qemu-aarch64', 'qemu-user']], 'testing the ARM64 prebuild');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-arm64-'));
  try {
    const src = path.join(tmp, 'load.c');
    // The addon leaves the napi_* functions to the host process (Node). This stand-in host exports a stub for each
    // one the addon imports (never called: only dlopen, the static initialisers and the entry point lookup run).
    const napi = sh('aarch64-linux-gnu-nm', ['-D', '--undefined-only', out], { capture: true })
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop())
      .filter((n) => n && /^(napi|node_api|uv)_/.test(n));
    fs.writeFileSync(
      src,
      '#include <dlfcn.h>\n#include <stdio.h>\n' +
        napi.map((n) => `void ${n}(void) {}\n`).join('') +
        'int main(int argc, char** argv) {\n' +
        '  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);\n' +
        '  if (!h) { printf("dlopen failed: %s\\n", dlerror()); return 1; }\n' +
        '  if (!dlsym(h, "napi_register_module_v1")) { printf("no N-API entry point\\n"); return 1; }\n' +
        `  printf("loads under qemu-aarch64: dlopen (all ${napi.length} N-API imports resolved), static initialisers, napi_register_module_v1 found\\n");\n  return 0;\n}\n`,
    );
    const exe = path.join(tmp, 'load');
    sh('aarch64-linux-gnu-gcc', [src, '-o', exe, '-rdynamic', '-ldl']);
    return sh('qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', exe, out], { capture: true }).trim();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function main() {
  const argv = process.argv.slice(2);
  const opt = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (process.platform !== 'linux') {
    // Windows/macOS prebuilds come from a release CI on those systems (README, "Prebuilt binaries").
    throw new Error(`npm run prebuilds builds Linux binaries; on ${process.platform} run npm run build and copy build/Release/sdnode.node`);
  }
  const host = process.arch;
  let arches = opt('--arch') === 'all' ? ['x64', 'arm64'] : opt('--arch') ? [opt('--arch')] : host === 'x64' ? ['x64', 'arm64'] : [host];
  const fromBuild = argv.includes('--from-build');
  if (fromBuild) arches = [host];
  const quiet = argv.includes('--quiet');
  const test = !argv.includes('--no-test');
  const report = [];
  const builtDirs = [];
  for (const arch of arches) {
    let out;
    if (arch === host) {
      // The host binary: the normal build folder, only the addon target (incremental after npm install/test).
      if (!fromBuild) buildNative({ quiet, target: 'sdnode' });
      out = store(path.join(root, 'build', 'Release', 'sdnode.node'), arch, 'strip');
      builtDirs.push(path.join(root, 'build'));
      report.push([out, glibcNeeds(out, 'readelf'), test ? testHost(out) : 'not tested']);
    } else if (arch === 'arm64' && host === 'x64') {
      ensureDebianPackages([['aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu']], 'cross-compiling for ARM64');
      const dir = path.join(root, 'build-prebuild-arm64');
      buildNative({
        quiet,
        target: 'sdnode',
        out: dir,
        defines: [
          'CMAKE_SYSTEM_NAME=Linux',
          'CMAKE_SYSTEM_PROCESSOR=aarch64',
          'CMAKE_C_COMPILER=aarch64-linux-gnu-gcc',
          'CMAKE_CXX_COMPILER=aarch64-linux-gnu-g++',
        ],
      });
      out = store(path.join(dir, 'Release', 'sdnode.node'), arch, 'aarch64-linux-gnu-strip');
      builtDirs.push(dir);
      report.push([out, glibcNeeds(out, 'aarch64-linux-gnu-readelf'), test ? testArm64(out) : 'not tested']);
    } else {
      throw new Error(`cannot build linux-${arch} on linux-${host}`);
    }
  }
  // Every prebuild must hold the same backends (e.g. a cross build that missed the Vulkan headers would not).
  const sets = builtDirs.map((d) => [d, backendsIn(d).join(', ')]);
  for (const [d, b] of sets) console.log(`prebuild: ${path.relative(root, d) || '.'} compiled the backends: ${b}`);
  if (new Set(sets.map((x) => x[1])).size > 1) {
    throw new Error(`the prebuilds hold different backends (${sets.map(([d, b]) => `${path.relative(root, d)}: ${b}`).join('; ')}); install the missing build tools and run again`);
  }
  for (const [out, needs, tested] of report) {
    console.log(`prebuild: ${path.relative(root, out)} ${(fs.statSync(out).size / 1e6).toFixed(2)} MB; needs ${needs}; ${tested}`);
  }
}

try {
  main();
} catch (err) {
  console.error(`prebuild: ${err.message}`);
  process.exit(1);
}
