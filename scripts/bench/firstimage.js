#!/usr/bin/env node
// npm run bench:first -- the first image end to end through the CLI, with its fixed costs made visible.
//
// Runs `node dist/cli/cli.js generate ... --json` as a user would (one process per image) on the random SD 1.5
// reference checkpoint (the golden tests write it to ~/.cache/sdnode/golden) and splits the wall time into phases
// from the CLI's `--json` "timings": process start + Node bootstrap + imports, addon load, reading the headers,
// model load (open, map, name mapping, detection, validation), text encoding, each U-Net step, VAE decode, model
// disposal, the model hash of the PNG metadata, PNG encoding + writing, and process exit. Each phase is printed in
// ms and as a fraction of one U-Net step (the fastest step of the same run).
//
// Cases (each its own process, in this order):
//   first  256², 2 steps, CFG 7: the model's pages evicted from the page cache AND an empty per-user cache (so the
//          whole-file hash of the metadata is computed): what a user waits for the very first time
//   cold   the same with the pages evicted but the hash remembered (a new boot, same model)
//   warm   the same again (pages in the page cache)
//   turbo  512², 1 step, CFG 1 (SD-Turbo style), warm
// Page-cache eviction is per file: posix_fadvise(POSIX_FADV_DONTNEED) through `dd iflag=nocache count=0` (GNU
// coreutils), never a machine-wide drop_caches; pages another process has mapped cannot be evicted, so the
// resident share after eviction is measured (`fincore`, util-linux) and printed.
//
// Options: --model FILE  --threads 2  --cases first,cold,warm,turbo  --repeat 1  --sdcpp PATH (stable-diffusion.cpp's
//          sd-cli, built outside this repository: runs the same cases for the ratio; nothing is downloaded or built)
//          --prompt TEXT  --cli FILE (another build's dist/cli/cli.js, e.g. an older commit's, for before/after; without
//          the --json "timings" only its end-to-end time and peak RSS are shown)  --label NAME (its name in the table)
// Writes bench-results/first-<timestamp>.json and .md and prints the table.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const { root, opt, goldenDir } = require('./common');
const model = path.resolve(opt('model', path.join(goldenDir, 'sd15-random-1234.safetensors')));
const threads = Number(opt('threads', '2'));
const repeat = Number(opt('repeat', '1'));
const prompt = opt('prompt', 'a red fox in the snow');
const wanted = opt('cases', 'first,cold,warm,turbo').split(',');
const sdcpp = opt('sdcpp', process.env.SDCPP_BIN || '');
const cli = path.resolve(opt('cli', path.join(root, 'dist', 'cli', 'cli.js')));
const label = opt('label', 'sdnode');

if (!fs.existsSync(cli)) {
  console.error(`${cli} is missing: run npm run build`);
  process.exit(1);
}
if (!fs.existsSync(model)) {
  console.error(`${model} is missing: run the golden tests once (npx jest test/golden.test.ts) or give --model FILE`);
  process.exit(1);
}
if (sdcpp && !fs.existsSync(sdcpp)) {
  console.error(`--sdcpp ${sdcpp}: no such file`);
  process.exit(1);
}

const CASES = {
  first: { size: 256, steps: 2, cfg: 7, evict: true, freshCache: true },
  cold: { size: 256, steps: 2, cfg: 7, evict: true },
  warm: { size: 256, steps: 2, cfg: 7 },
  turbo: { size: 512, steps: 1, cfg: 1 },
};

function residentShare(file) {
  const p = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES,SIZE', file], { encoding: 'utf8' });
  if (p.status !== 0) return undefined;
  const [res, size] = p.stdout.trim().split(/\s+/).map(Number);
  return size ? res / size : undefined;
}
function evict(file) {
  const p = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (p.status !== 0) throw new Error(`dd iflag=nocache failed: ${p.stderr}`);
}
// Wall time and peak RSS of a child through GNU time; the child's own output is returned.
function timed(cmd, argv, env) {
  const tf = path.join(os.tmpdir(), `sdnode-bench-time-${process.pid}.txt`);
  const t0 = performance.now();
  const t0Epoch = performance.timeOrigin + t0;
  const p = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', '-o', tf, cmd, ...argv], { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  const wallMs = performance.now() - t0;
  let rssMb;
  let cpuS;
  try {
    const [, rss, u, s] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(/\s+/).map(Number);
    rssMb = rss / 1024;
    cpuS = u + s;
    fs.rmSync(tf, { force: true });
  } catch {
    /* no GNU time output */
  }
  return { status: p.status, stdout: p.stdout, stderr: p.stderr, wallMs, t0Epoch, rssMb, cpuS };
}
function loadavg() {
  return os.loadavg().map((x) => x.toFixed(2)).join(' ');
}

const out = path.join(os.tmpdir(), `sdnode-bench-first-${process.pid}.png`);
const results = [];
function runOurs(name, c) {
  const env = { ...process.env };
  let tmpCache;
  if (c.freshCache) {
    tmpCache = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-bench-cache-'));
    env.SDNODE_CACHE_DIR = tmpCache;
  }
  let resident;
  if (c.evict) {
    evict(model);
    resident = residentShare(model);
  }
  const la = loadavg();
  const argv = [cli, 'generate', '--model', model, '--prompt', prompt, '--width', String(c.size), '--height', String(c.size),
    '--steps', String(c.steps), '--cfg', String(c.cfg), '--sampler', 'euler', '--seed', '42', '--threads', String(threads),
    '--output', out, '--json', '--quiet'];
  const r = timed(process.execPath, argv, env);
  if (tmpCache) fs.rmSync(tmpCache, { recursive: true, force: true });
  if (r.status !== 0) {
    console.error(`${name}: the CLI failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
    return;
  }
  const j = JSON.parse(r.stdout);
  const t = j.timings;
  if (!t) {
    results.push({ engine: label, name, ...c, resident, loadavg: la, wallMs: r.wallMs, rssMb: r.rssMb, cpuS: r.cpuS, step: undefined, phases: [] });
    console.error(`${name} (${label}): ${(r.wallMs / 1000).toFixed(2)} s end to end, peak RSS ${r.rssMb?.toFixed(0)} MB (no timings from this CLI)`);
    return;
  }
  // process start as seen by Node vs our spawn: the time before Node's clock started (exec, dynamic linking)
  const preNodeMs = t.timeOrigin - r.t0Epoch;
  const exitMs = r.wallMs - (t.timeOrigin - r.t0Epoch) - t.endMs;
  const step = Math.min(...t.stepMs);
  const phases = [
    ['exec + Node bootstrap + imports', preNodeMs + t.startupMs],
    ['addon load', t.addonLoadMs],
    ['headers (size check), excl. addon', t.inspectMs - t.addonLoadMs],
    ['model load (open, map, validate)', t.loadMs],
    ['generate: before text encoding', t.generateMs - t.encodeMs - t.stepMs.reduce((a, b) => a + b, 0) - t.decodeMs],
    ['text encoding', t.encodeMs],
    ...t.stepMs.map((s, i) => [`U-Net step ${i + 1}`, s]),
    ['VAE decode', t.decodeMs],
    ['model dispose', t.disposeMs],
    ['model hash (metadata)', t.hashMs],
    ['PNG encode + write', t.saveMs],
    ['process exit', exitMs],
  ];
  results.push({ engine: label, name, ...c, resident, loadavg: la, wallMs: r.wallMs, rssMb: r.rssMb, cpuS: r.cpuS, step, phases, timings: t });
  console.error(`${name}: ${(r.wallMs / 1000).toFixed(2)} s end to end, step ${step.toFixed(0)} ms, peak RSS ${r.rssMb?.toFixed(0)} MB` +
    `${resident !== undefined ? `, resident after eviction ${(resident * 100).toFixed(1)} %` : ''} (load average ${la})`);
}

// stable-diffusion.cpp's sd-cli: wall time and its own phase lines ("... completed, taking X s").
function runSdcpp(name, c) {
  let resident;
  if (c.evict) {
    evict(model);
    resident = residentShare(model);
  }
  const la = loadavg();
  const argv = ['-m', model, '-p', prompt, '-W', String(c.size), '-H', String(c.size), '--steps', String(c.steps),
    '--cfg-scale', String(c.cfg), '--sampling-method', 'euler', '-t', String(threads), '-s', '42', '-o', out];
  const r = timed(sdcpp, argv, process.env);
  if (r.status !== 0) {
    console.error(`${name} (sd-cli): failed (${r.status}):\n${r.stderr.slice(-2000)}`);
    return;
  }
  const log = `${r.stdout}\n${r.stderr}`;
  const grab = (re) => {
    const m = log.match(re);
    return m ? Number(m[1]) * (m[2] === 'ms' ? 1 : 1000) : undefined;
  };
  const phases = [
    // sd-cli loads lazily, once per component: the sum of its "loading tensors completed" lines
    ['load (sd-cli: all "loading tensors" lines)', [...log.matchAll(/loading tensors completed, taking ([\d.]+)s/g)].reduce((t, m) => t + Number(m[1]) * 1000, 0) || undefined],
    ['text encoding', grab(/get_learned_condition completed, taking ([\d.]+) ?(s|ms)/)],
    ['sampling (all steps)', grab(/sampling completed, taking ([\d.]+) ?(s|ms)/)],
    ['VAE decode', grab(/decode_first_stage completed, taking ([\d.]+) ?(s|ms)/)],
  ];
  const sampling = phases[2][1];
  const step = sampling !== undefined ? sampling / c.steps : undefined;
  results.push({ engine: 'sd-cli', name, ...c, resident, loadavg: la, wallMs: r.wallMs, rssMb: r.rssMb, cpuS: r.cpuS, step, phases, log: log.slice(-4000) });
  console.error(`${name} (sd-cli): ${(r.wallMs / 1000).toFixed(2)} s end to end, step ${step?.toFixed(0)} ms, peak RSS ${r.rssMb?.toFixed(0)} MB (load average ${la})`);
}

for (let k = 0; k < repeat; k++) {
  for (const name of wanted) {
    const c = CASES[name];
    if (!c) {
      console.error(`unknown case ${name} (first, cold, warm, turbo)`);
      process.exit(2);
    }
    runOurs(name, c);
    if (sdcpp && name !== 'first') runSdcpp(name, c); // sd-cli keeps no hash cache: its "cold" is its first image
  }
}
fs.rmSync(out, { force: true });

const fmt = (ms) => (ms === undefined || Number.isNaN(ms) ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const frac = (ms, step) => (ms === undefined || !step ? '-' : `${((ms / step) * 100).toFixed(0)} %`);
const lines = [];
const header = `First image end to end (CLI) — ${new Date().toISOString()}, ${os.cpus()[0].model}, ${os.cpus().length} CPUs, ${threads} threads, ` +
  `${path.basename(model)}, prompt "${prompt}", euler. Phases in wall time and as % of one U-Net step of the same run.`;
lines.push(header, '');
for (const r of results) {
  lines.push(`### ${r.name} (${r.engine}): ${r.size}², ${r.steps} step${r.steps > 1 ? 's' : ''}, CFG ${r.cfg}` +
    `${r.evict ? `, page cache evicted (resident after eviction ${r.resident !== undefined ? (r.resident * 100).toFixed(1) + ' %' : 'unknown'})` : ', warm page cache'}` +
    `${r.freshCache ? ', empty per-user cache (hash computed)' : ''} — load average ${r.loadavg}`);
  lines.push('', `end to end **${fmt(r.wallMs)}**, one U-Net step ${fmt(r.step)}, peak RSS ${r.rssMb ? (r.rssMb / 1024).toFixed(2) + ' GB' : '-'}, CPU time ${r.cpuS?.toFixed(1)} s`, '');
  if (!r.phases.length) continue;
  lines.push('| phase | time | % of one step |', '|---|---|---|');
  for (const [label, ms] of r.phases) lines.push(`| ${label} | ${fmt(ms)} | ${frac(ms, r.step)} |`);
  lines.push('');
}
const md = lines.join('\n');
console.log(md);
const outDir = path.join(root, 'bench-results');
fs.mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
fs.writeFileSync(path.join(outDir, `first-${stamp}.json`), JSON.stringify({ header, results }, null, 1));
fs.writeFileSync(path.join(outDir, `first-${stamp}.md`), md);
console.error(`wrote bench-results/first-${stamp}.json and .md`);
