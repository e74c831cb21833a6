#!/usr/bin/env node
// The sanitizer lane: builds the engine and its native test runner with AddressSanitizer + UndefinedBehaviorSanitizer
// (cmake -DSDN_SANITIZE=ON -DSDN_BUILD_ADDON=OFF, -fno-sanitize-recover=all) in build-sanitize/, then runs, under
// the sanitizers:
//   1. every native test (build-sanitize/bin/sdn_tests: kernels, parsers, the C++ corrupt-file corpora, the fuzz
//      regression inputs, models and pipeline on tiny weights);
//   2. `sdn_formats check` (open with data, inspect, validate an SD1 model's shapes) on every file of the JavaScript corrupt-file corpus (scripts/make-corrupt-corpus.js) and
//      of the fuzz seeds and regressions, where each must end with a typed error or a result, never a report.
// Any ASan or UBSan report fails the run. `npm test` runs it through test/sanitize.test.ts; alone:
//   npm run test:sanitize
// Module: require('./scripts/sanitize.js').runSanitizeLane({ log }) -> { ok, failures: [...], buildMs, testMs }
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const buildDir = path.join(root, 'build-sanitize');
const bin = (name) => path.join(buildDir, 'bin', name);

// leak detection needs ptrace-like access some containers refuse; SDN_SANITIZE_LEAKS=0 turns it off there
const ASAN_OPTIONS = `detect_leaks=${process.env.SDN_SANITIZE_LEAKS === '0' ? 0 : 1}:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=0`;
const UBSAN_OPTIONS = 'halt_on_error=1:print_stacktrace=1';
const REPORT = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer|SUMMARY: (Address|Undefined|Leak)/;

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    env: { ...process.env, ASAN_OPTIONS, UBSAN_OPTIONS, ...(opts.env || {}) },
    timeout: opts.timeout,
  });
}

/** Configures and builds (incrementally) sdn_tests and sdn_formats with the sanitizers. Throws on failure. */
function buildSanitized(log = () => {}) {
  const jobs = String(Math.max(1, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length));
  if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
    log('configuring build-sanitize/ (ASan + UBSan)');
    const ninja = spawnSync('ninja', ['--version']).status === 0;
    const c = run('cmake', ['-S', root, '-B', buildDir, ...(ninja ? ['-G', 'Ninja'] : []), '-DSDN_SANITIZE=ON', '-DSDN_BUILD_ADDON=OFF',
      // -O1: sanitized code builds much faster than at -O2, and the tests still run in about a minute
      '-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG']);
    if (c.status !== 0) throw new Error(`cmake configure failed:\n${c.stdout}\n${c.stderr}`);
  }
  log('building sdn_tests and sdn_formats with sanitizers');
  const b = run('cmake', ['--build', buildDir, '--target', 'sdn_tests', 'sdn_formats', '--parallel', jobs]);
  if (b.status !== 0) throw new Error(`sanitizer build failed:\n${b.stdout.slice(-8000)}\n${b.stderr.slice(-8000)}`);
}

function filesUnder(dir) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile() && !e.name.endsWith('.md') && e.name !== 'manifest.json') out.push(p);
  }
  return out;
}

/** Runs the lane. Returns { ok, failures, buildMs, testMs, nativeSummary, corpusFiles }. */
function runSanitizeLane({ log = () => {} } = {}) {
  const t0 = Date.now();
  buildSanitized(log);
  const t1 = Date.now();
  const failures = [];

  log('running the native tests under ASan + UBSan');
  const r = run(bin('sdn_tests'), [], { timeout: 15 * 60 * 1000 });
  const out = `${r.stdout}\n${r.stderr}`;
  const summary = (r.stdout.match(/\d+ passed, \d+ failed/) || ['no summary'])[0];
  if (r.status !== 0 || REPORT.test(out)) {
    const lines = out.split('\n').filter((l) => /^FAIL|ERROR|runtime error|SUMMARY|^\s+#\d/.test(l)).slice(0, 60);
    failures.push(`sdn_tests (status ${r.status}, signal ${r.signal}, ${summary}):\n${lines.join('\n')}`);
  }

  // the JavaScript corrupt-file corpus and the fuzz inputs through the readers, detection and name mapping
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-sanitize-'));
  let corpusFiles = 0;
  try {
    const { makeCorruptCorpus } = require('./make-corrupt-corpus.js');
    makeCorruptCorpus(path.join(tmp, 'corrupt'));
    const inputs = [
      ...filesUnder(path.join(tmp, 'corrupt')),
      ...filesUnder(path.join(root, 'test', 'fixtures', 'fuzz-seeds')),
      ...filesUnder(path.join(root, 'test', 'fixtures', 'fuzz-regressions')),
    ];
    log(`running sdn_formats check on ${inputs.length} corrupt, seed and regression files`);
    for (const f of inputs) {
      const q = run(bin('sdn_formats'), ['check', f], { timeout: 60 * 1000 });
      corpusFiles++;
      const o = `${q.stdout}\n${q.stderr}`;
      if (q.signal || (q.status !== 0 && q.status !== 2) || REPORT.test(o)) {
        failures.push(`sdn_formats check ${path.relative(tmp, f)} (status ${q.status}, signal ${q.signal}):\n${o.split('\n').slice(0, 30).join('\n')}`);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { ok: failures.length === 0, failures, buildMs: t1 - t0, testMs: Date.now() - t1, nativeSummary: summary, corpusFiles };
}

module.exports = { runSanitizeLane, buildSanitized, buildDir };

if (require.main === module) {
  const log = (m) => process.stderr.write(`sanitize: ${m}\n`);
  try {
    const r = runSanitizeLane({ log });
    log(`native tests: ${r.nativeSummary}; corpus files: ${r.corpusFiles}; build ${(r.buildMs / 1000).toFixed(0)} s, run ${(r.testMs / 1000).toFixed(0)} s`);
    if (!r.ok) {
      for (const f of r.failures) process.stderr.write(`${f}\n\n`);
      process.exitCode = 1;
    }
  } catch (err) {
    process.stderr.write(`sanitize: ${err.message}\n`);
    process.exitCode = 1;
  }
}
