#!/usr/bin/env node
// npm run bench:vs-sdcpp -- side-by-side benchmark of sdnode's engine against a stable-diffusion.cpp binary that
// YOU built outside this repository (this script never downloads or builds it). Both engines get the same
// checkpoint file, size, step count, CFG, sampler, seed and thread count; each configuration runs in its own
// process under /usr/bin/time -v so that each peak RSS is its own, and the two engines alternate.
//
//   npm run bench:vs-sdcpp -- --sdcpp /path/to/sd-cli --model FILE [--size 1024] [--types f16,q8_0,q4_K]
//        [--steps 1] [--cfg 5] [--threads 2] [--repeat 1] [--resident] [--label TEXT]
//
// --types: weight types both engines quantize to at load (f16 = as stored). A GGUF file that is already quantized
//          is passed with --types f16 (no conversion).
// --resident: also run sdnode with every weight page kept resident (SDN_STREAM_WEIGHTS=0) — the "fully resident"
//          peak RSS; the other sdnode run streams (SDN_STREAM_WEIGHTS=1: the U-Net's clean weight pages of a
//          memory-mapped file are released after each block, whatever the step count).
// Per-step time: sdnode's best step (sdn_bench_sd); stable-diffusion.cpp's "sampling completed" time / steps.
// Writes bench-results/vs-sdcpp-<timestamp>.json and .md and prints the table.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const { root, opt, flag, goldenDir } = require('./common');
const sdcpp = opt('sdcpp', process.env.SDCPP_BIN);
const model = opt('model');
const size = Number(opt('size', '512'));
const types = opt('types', 'f16').split(',');
const steps = Number(opt('steps', '1'));
const cfg = Number(opt('cfg', '7'));
const threads = Number(opt('threads', '2'));
const repeat = Number(opt('repeat', '1'));
const label = opt('label', '');
const tokenizer = opt('tokenizer', path.join(goldenDir, 'clip-merges.txt'));
const prompt = 'a red fox in the snow, highly detailed';
const ours = path.join(root, 'build', 'bin', 'sdn_bench_sd');

function die(msg) {
  console.error(msg);
  process.exit(2);
}
if (!sdcpp || !fs.existsSync(sdcpp)) die('give --sdcpp PATH: a stable-diffusion.cpp sd-cli binary you built outside this repository');
if (!model || !fs.existsSync(model)) die('give --model FILE: a checkpoint both engines read');
if (!fs.existsSync(ours)) die(`${ours} is missing: run npm run build:native`);
if (!fs.existsSync('/usr/bin/time')) die('/usr/bin/time is missing (Debian package "time")');
if (!Number.isInteger(size) || size % 8) die('--size must be a multiple of 8');

function timed(cmd, argv, env) {
  const t0 = process.hrtime.bigint();
  const p = spawnSync('/usr/bin/time', ['-v', cmd, ...argv], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...env } });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(p.stderr);
  return { status: p.status, stdout: p.stdout, stderr: p.stderr, wall, peakMB: rss ? Number(rss[1]) / 1024 : NaN };
}
function num(re, text) {
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
}
function loadavg() {
  return os.loadavg()[0].toFixed(2);
}

function runOurs(type, resident) {
  const a = ['--model', model, '--tokenizer', tokenizer, '--size', String(size), '--type', type, '--steps', String(steps), '--threads', String(threads), '--cfg', String(cfg)];
  // SDN_STREAM_WEIGHTS=1: the streamed figure whatever the step count (by default a generation with more than one
  // U-Net evaluation keeps the pages mapped until sampling ends, which is the resident figure)
  const r = timed(ours, a, resident ? { SDN_STREAM_WEIGHTS: '0' } : { SDN_STREAM_WEIGHTS: '1' });
  if (r.status !== 0) return { error: r.stderr.slice(-2000) };
  const o = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{')));
  return { engine: resident ? 'sdnode (resident)' : 'sdnode', type, load: o.load_s, encode: o.encode_s, step: o.step_best_s, steps: o.step_s,
    decode: o.decode_s, peakMB: r.peakMB, wall: r.wall, fma: [o.fma_gflops_before, o.fma_gflops_after], load1: loadavg() };
}
function runRef(type) {
  const out = path.join(os.tmpdir(), `vs-sdcpp-${process.pid}.png`);
  const a = ['-m', model, '-p', prompt, '-W', String(size), '-H', String(size), '--steps', String(steps), '--cfg-scale', String(cfg),
    '--sampling-method', 'euler', '-t', String(threads), '-s', '42', '-o', out, '-v'];
  if (type !== 'f16') a.push('--type', type);
  const r = timed(sdcpp, a, {});
  const text = r.stdout + r.stderr;
  if (r.status !== 0) return { error: text.slice(-2000) };
  const sampling = num(/sampling completed, taking ([\d.]+)s/, text);
  return { engine: 'stable-diffusion.cpp', type, load: num(/loading tensors completed, taking ([\d.]+)s/, text),
    encode: num(/get_learned_condition completed, taking ([\d.]+)s/, text), step: sampling / steps,
    decode: num(/decode_first_stage completed, taking ([\d.]+)s/, text), peakMB: r.peakMB, wall: r.wall, load1: loadavg() };
}

const results = [];
for (const type of types) {
  for (let rep = 0; rep < repeat; rep++) {
    for (const run of [() => runOurs(type, false), () => runRef(type), ...(flag('resident') ? [() => runOurs(type, true)] : [])]) {
      const r = run();
      if (r.error) {
        console.error(`${type}: a run failed:\n${r.error}`);
        continue;
      }
      console.error(`${r.engine} ${type}: load ${r.load}s encode ${r.encode}s step ${r.step.toFixed(2)}s decode ${r.decode}s peak RSS ${r.peakMB.toFixed(0)} MB wall ${r.wall.toFixed(1)}s (load avg ${r.load1})`);
      results.push(r);
    }
  }
}

const best = (engine, type, key) => {
  const v = results.filter((r) => r.engine === engine && r.type === type).map((r) => r[key]).filter((x) => Number.isFinite(x));
  return v.length ? Math.min(...v) : NaN;
};
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) + '×' : '-');
const rows = ['| weights | ref step s | sdnode step s | ratio | ref decode s | sdnode decode s | ratio | ref peak RSS GB | sdnode peak RSS GB | ratio | sdnode resident peak GB | ratio |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|'];
for (const type of types) {
  const rs = best('stable-diffusion.cpp', type, 'step'), os_ = best('sdnode', type, 'step');
  const rd = best('stable-diffusion.cpp', type, 'decode'), od = best('sdnode', type, 'decode');
  const rr = best('stable-diffusion.cpp', type, 'peakMB') / 1024, or = best('sdnode', type, 'peakMB') / 1024;
  const ores = best('sdnode (resident)', type, 'peakMB') / 1024;
  rows.push(`| ${type} | ${f(rs)} | ${f(os_)} | ${ratio(os_, rs)} | ${f(rd)} | ${f(od)} | ${ratio(od, rd)} | ${f(rr)} | ${f(or)} | ${ratio(or, rr)} | ${f(ores)} | ${ratio(ores, rr)} |`);
}
const header = `sdnode vs stable-diffusion.cpp (${sdcpp}) — ${new Date().toISOString()}, ${os.cpus()[0].model}, ${os.cpus().length} CPUs, ` +
  `${threads} threads; ${path.basename(model)} at ${size}², ${steps} step(s), euler, CFG ${cfg}${label ? `; ${label}` : ''}`;
const md = `${header}\n\n${rows.join('\n')}\n`;
console.log(md);
const outDir = path.join(root, 'bench-results');
fs.mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
fs.writeFileSync(path.join(outDir, `vs-sdcpp-${stamp}.json`), JSON.stringify({ header, results }, null, 1));
fs.writeFileSync(path.join(outDir, `vs-sdcpp-${stamp}.md`), md);
console.error(`wrote bench-results/vs-sdcpp-${stamp}.json and .md`);
