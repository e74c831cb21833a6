#!/usr/bin/env node
// Adapter benchmark on the random-weight reference files (the golden cache, see test/helpers/golden.ts):
//  * LoRA switching: one loaded SD 1.5 model, generations of 1 step at 64x64 (cfg 1) without a LoRA, with the
//    reference rank-8 LoRA at 0.8, at 0.5 (every adapted weight merged again), with it again at 0.5 (unchanged:
//    nothing merged), and without (merged copies dropped). The difference to the plain generation is the
//    switching cost; adapterBytes is the memory added.
//  * ControlNet overhead per step: 256x256, CFG 7, euler, 4 steps, with and without the reference ControlNet.
// Usage: npm run bench:adapters -- [--threads 2]   (after `npm run build`)
'use strict';
const path = require('path');
const { loadModel } = require('../../dist/index.js');

const { opt, goldenDir: cache, sharedDir: shared } = require('./common');

const threads = Number(opt('threads', '2'));

async function main() {
  const model = await loadModel(path.join(cache, 'sd15-random-1234.safetensors'), { tokenizerPath: path.join(cache, 'clip-merges.txt'), threads });
  const lora = path.join(cache, 'lora-sd15-random.safetensors');
  const base = { prompt: 'a castle on a hill', width: 64, height: 64, steps: 1, cfgScale: 1, sampler: 'euler', seed: 1 };
  const rows = [];
  const run = async (label, extra) => {
    const r = await model.generate({ ...base, ...extra });
    rows.push({ label, ms: Math.round(r.elapsedMs), adapterMB: +(r.adapterBytes / 1e6).toFixed(1) });
  };
  await run('warm-up, no LoRA', {});
  await run('no LoRA', {});
  await run('LoRA 0.8 (merge)', { loras: [{ path: lora, weight: 0.8 }] });
  await run('LoRA 0.5 (re-merge)', { loras: [{ path: lora, weight: 0.5 }] });
  await run('LoRA 0.5 again (unchanged)', { loras: [{ path: lora, weight: 0.5 }] });
  await run('no LoRA (copies dropped)', {});
  console.table(rows);
  const cn = { model: path.join(cache, 'controlnet-sd15-random.safetensors'), image: path.join(shared, 'golden', 'inputs', 'edges-256x256.png'), strength: 0.9 };
  const g = { prompt: 'three balloons', width: 256, height: 256, steps: 4, cfgScale: 7, sampler: 'euler', seed: 16 };
  const t = [];
  for (const [label, extra] of [['no ControlNet', {}], ['ControlNet (load + hint)', { controlNet: cn }], ['ControlNet (loaded)', { controlNet: cn }], ['no ControlNet', {}]]) {
    let sampleStart = 0;
    let sampleEnd = 0;
    const r = await model.generate({ ...g, ...extra }, {
      onProgress: (e) => {
        if (e.phase === 'sample' && e.step === 0) sampleStart = performance.now();
        if (e.phase === 'sample' && e.step === e.steps) sampleEnd = performance.now();
      },
    });
    t.push({ label, totalMs: Math.round(r.elapsedMs), msPerStep: Math.round((sampleEnd - sampleStart) / g.steps) });
  }
  console.table(t);
  await model.dispose();
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
