#!/usr/bin/env node
// npm run bench:controls -- img2img and TAESD timings through the public API (dist/, build first) on the
// random-weight SD 1.5 checkpoint and TAESD file of the golden tests (see test/helpers/golden.ts for the cache):
//   * img2img at 512x512, strength 0.5 of a 20-step euler schedule, CFG 7: the steps that actually run (11), the
//     time per step and the VAE encode of the init image (Encode phase minus text encoding, measured separately);
//   * decode of the same 512x512 latent with the VAE and with TAESD (Decode phase times).
// Options: --size 512  --steps 20  --strength 0.5  --threads 2  --model FILE  --taesd FILE
// Prints one JSON object (with the load average, since the machine may be shared).
'use strict';
const os = require('os');
const path = require('path');

const { root, opt, goldenDir } = require('./common');
const size = Number(opt('size', '512'));
const steps = Number(opt('steps', '20'));
const strength = Number(opt('strength', '0.5'));
const threads = Number(opt('threads', '2'));
const modelFile = opt('model', path.join(goldenDir, 'sd15-random-1234.safetensors'));
const taesdFile = opt('taesd', path.join(goldenDir, 'taesd-random.safetensors'));
const merges = path.join(goldenDir, 'clip-merges.txt');

async function main() {
  const { loadModel } = require(path.join(root, 'dist', 'index.js'));
  const model = await loadModel(modelFile, { threads, tokenizerPath: merges, taesdPath: taesdFile });
  const base = { prompt: 'a red fox in the snow', width: size, height: size, seed: 1, sampler: 'euler', cfgScale: 7 };
  // phase timings from the engine's own clock
  async function timed(options) {
    const marks = {};
    const r = await model.generate(options, {
      onProgress: (e) => {
        const key = `${e.phase}:${e.step}`;
        if (!(key in marks)) marks[key] = e.elapsedMs;
        marks.sampleSteps = e.phase === 'sample' ? e.steps : marks.sampleSteps;
        marks.last = e.elapsedMs;
      },
    });
    return { r, marks };
  }
  const out = { machine: `${os.cpus()[0].model}, ${os.cpus().length} CPUs visible, ${threads} threads`, loadavgBefore: os.loadavg() };
  // txt2img, 1 step: the decode phase of both decoders on a 512x512 latent
  const vae = await timed({ ...base, steps: 1 });
  const taesd = await timed({ ...base, steps: 1, decoder: 'taesd' });
  const dec = (m) => (m.last - m['decode:0']) / 1000;
  out.decodeVaeS = dec(vae.marks);
  out.decodeTaesdS = dec(taesd.marks);
  out.textEncodeS = vae.marks['encode:1'] / 1000;
  // img2img
  const init = vae.r.images[0];
  const i2i = await timed({ ...base, steps, initImage: init, strength });
  const m = i2i.marks;
  out.img2img = {
    steps,
    strength,
    stepsRun: m.sampleSteps,
    encodeS: m['encode:1'] / 1000,
    vaeEncodeS: (m['encode:1'] - vae.marks['encode:1']) / 1000,
    perStepS: (m[`sample:${m.sampleSteps}`] - m['sample:0']) / 1000 / m.sampleSteps,
    decodeS: dec(m),
    totalS: m.last / 1000,
  };
  out.loadavgAfter = os.loadavg();
  await model.dispose();
  console.log(JSON.stringify(out, null, 2));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
