// Golden-image tests of image conditioning and the tiny autoencoder (../shared/golden, wave-2 cases):
//   w1-img2img  img2img from inputs/scene-256x256.png at strength 0.4 (VAE encode, start step, ancestral noise)
//   w2-inpaint  inpainting checkpoint (9-channel U-Net) with init image + mask, strength 1
//   w7-taesd    decoding with TAESD instead of the VAE
// each through the native CLI (build/bin/sdn_cli, stable-diffusion.cpp's flags) and through the JavaScript API,
// on the CPU (the CLI runs also on every usable GPU device, see goldenTargets). Pass: PSNR >= 40 dB against the reference engine's image (pngcompare.py).
// The random-weight files are generated once (make_random_sd.py, cached, hash-checked; see helpers/golden.ts).
// Without ../shared, python3 + numpy or the native CLI the cases are skipped with a visible message.
import * as fs from 'fs';
import * as path from 'path';
import { loadModel } from '../lib';
import { comparePng, ensureArch, ensureMerges, goldenDir, goldenSkipReason, goldenTargets, onDevice, outDir, runNativeCli, type Wave2Case } from './helpers/golden';


const IDS = ['w1-img2img', 'w2-inpaint', 'w7-taesd'];
const inputs = path.join(goldenDir, 'inputs');
const reason = goldenSkipReason('cases-wave2.json');

if (reason) {
  // eslint-disable-next-line no-console
  console.warn(reason);
  test.skip(reason, () => undefined);
} else {
  const all: Wave2Case[] = JSON.parse(fs.readFileSync(path.join(goldenDir, 'cases-wave2.json'), 'utf8'));
  const cases = IDS.map((id) => {
    const c = all.find((x) => x.id === id);
    if (!c) throw new Error(`${id} is missing from cases-wave2.json`);
    return c;
  });
  const targets = goldenTargets('golden img2img / inpainting / TAESD');
  const files: Record<string, string> = {};
  let merges = '';
  beforeAll(() => {
    merges = ensureMerges();
    for (const c of cases) {
      files[c.model] ??= ensureArch(c.model);
      if (c.taesd) files[c.taesd] ??= ensureArch(c.taesd);
    }
    fs.mkdirSync(outDir, { recursive: true });
  }, 20 * 60 * 1000);

  describe('golden img2img / inpainting / TAESD through sdn_cli (PSNR >= 40 dB)', () => {
    for (const device of targets)
    for (const c of cases) {
      const { label, suffix } = onDevice(device);
      test(
        c.id + label,
        () => {
          const ours = path.join(outDir, `${c.id}${suffix}-cli.png`);
          const args = [
            'generate', '--model', files[c.model], '--tokenizer', merges, '--prompt', c.prompt, '--negative', c.negative,
            '--width', String(c.width), '--height', String(c.height), '--steps', String(c.steps), '--cfg', String(c.cfg),
            '--sampler', c.sampler, '--scheduler', c.scheduler, '--seed', String(c.seed), '--rng', 'cuda',
            '--device', device, '--output', ours, '--quiet',
          ];
          if (c.init) args.push('--init-img', path.join(inputs, c.init), '--strength', String(c.strength ?? 0.75));
          if (c.mask) args.push('--mask', path.join(inputs, c.mask));
          if (c.taesd) args.push('--taesd', files[c.taesd]);
          const secs = runNativeCli(args);
          // eslint-disable-next-line no-console
          console.log(`${c.id}${label} (cli): ${comparePng(ours, c.id)} (${secs.toFixed(1)} s)`);
        },
        20 * 60 * 1000,
      );
    }
  });

  describe('golden img2img / inpainting / TAESD through the JavaScript API (PSNR >= 40 dB)', () => {
    for (const c of cases) {
      test(
        c.id,
        async () => {
          const t0 = Date.now();
          const model = await loadModel(files[c.model], {
            tokenizerPath: merges,
            taesdPath: c.taesd ? files[c.taesd] : undefined,
          });
          try {
            if (c.mask) expect(model.info.variant).toBe('inpaint');
            const previews: number[] = [];
            const result = await model.generate(
              {
                prompt: c.prompt,
                negativePrompt: c.negative,
                width: c.width,
                height: c.height,
                steps: c.steps,
                cfgScale: c.cfg,
                sampler: c.sampler as 'euler',
                scheduler: c.scheduler as 'discrete',
                seed: c.seed,
                rng: 'cuda',
                // the init image as a Buffer here (the CLI test passes a path), the mask as a path
                initImage: c.init ? fs.readFileSync(path.join(inputs, c.init)) : undefined,
                mask: c.mask ? path.join(inputs, c.mask) : undefined,
                strength: c.init ? c.strength : undefined,
                decoder: c.taesd ? 'taesd' : 'vae',
              },
              { onPreview: c.taesd ? (e) => previews.push(e.image.width) : undefined, previewMethod: c.taesd ? 'taesd' : undefined },
            );
            const ours = path.join(outDir, `${c.id}-js.png`);
            await result.images[0].save(ours);
            if (c.init) {
              // A1111 records the denoising strength of img2img in the PNG parameters
              expect(result.images[0].infotext()).toContain(`Denoising strength: ${c.strength}`);
            }
            if (c.taesd) expect(previews.every((w) => w === c.width) && previews.length > 0).toBe(true); // full-size previews
            // eslint-disable-next-line no-console
            console.log(`${c.id} (js): ${comparePng(ours, c.id)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
          } finally {
            await model.dispose();
          }
        },
        20 * 60 * 1000,
      );
    }
  });
}
