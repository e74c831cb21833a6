// SD 2.x and SDXL end to end on tiny generated checkpoints (scripts/make-tiny-model.js --family sd2|sdxl): the
// original single-file names (OpenCLIP towers with fused in_proj, conditioner.embedders.*), GGUF, diffusers folders
// (text_encoder_2/, tokenizer_2/, q/k/v split, HF text projection) and our converter's GGUF must give the same
// image; model.info reports the family and how the prediction type was decided (option > file > SD2 probe);
// sizes off the U-Net's multiple fail with the rule.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { convert, inspect, InvalidOptionError, loadModel, SdnodeError } from '../lib/index';

const repoRoot = path.resolve(__dirname, '..');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { makeTinyModel } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js'));

interface Tiny {
  safetensors: string;
  gguf: string;
  diffusers: string;
  merges: string;
}

const base = { prompt: 'a (red:1.2) fox', negativePrompt: 'blurry', steps: 2, sampler: 'euler' as const, seed: 7, cfgScale: 5 };

describe.each(['sd2', 'sdxl'])('tiny %s checkpoints', (family) => {
  let dir = '';
  let tiny: Tiny;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `sdn-${family}-`));
    tiny = makeTinyModel({ outDir: dir, dtype: 'f16', family, formats: ['safetensors', 'gguf', 'diffusers'] });
  }, 120000);
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function image(source: string | object, opts: Record<string, unknown> = {}, gen: Record<string, unknown> = {}) {
    const model = await loadModel(source as string, { tokenizerPath: tiny.merges, threads: 2, ...opts });
    try {
      const r = await model.generate({ ...base, width: 64, height: 64, ...gen });
      return { data: r.images[0].data, info: model.info };
    } finally {
      await model.dispose();
    }
  }

  test('single file, GGUF, diffusers folder and our converted GGUF give the same image', async () => {
    const st = await image(tiny.safetensors);
    expect(st.info.family).toBe(family);
    expect(st.data.length).toBe(64 * 64 * 3);
    const gg = await image(tiny.gguf);
    expect(gg.data.equals(st.data)).toBe(true);
    const df = await image(tiny.diffusers);
    expect(df.data.equals(st.data)).toBe(true);
    if (family === 'sdxl') {
      expect(fs.existsSync(path.join(tiny.diffusers, 'text_encoder_2'))).toBe(true);
      expect(fs.existsSync(path.join(tiny.diffusers, 'tokenizer_2', 'merges.txt'))).toBe(true);
    }
    // the converter keeps f32 weights as f32 with --type f32: the same image from the diffusers folder's GGUF
    const out = path.join(dir, 'converted.gguf');
    await convert(tiny.diffusers, out, { type: 'f32', vaeType: 'f32' });
    const cv = await image(out);
    expect(cv.data.equals(st.data)).toBe(true);
    expect((await inspect(out)).family).toBe(family);
    // a separate VAE file replacing the checkpoint's (here the diffusers folder's VAE: the same weights)
    const vaeFile = fs.readdirSync(path.join(tiny.diffusers, 'vae')).find((f) => f.endsWith('.safetensors'))!;
    const withVae = await image({ file: tiny.safetensors, vae: path.join(tiny.diffusers, 'vae', vaeFile) } as never);
    expect(withVae.data.equals(st.data)).toBe(true);
  }, 300000);

  test('prediction type: option > file > family default / SD 2.x probe, reported in model.info', async () => {
    const ins = await inspect(tiny.safetensors);
    const def = await image(tiny.safetensors);
    if (family === 'sd2') {
      expect(ins.prediction).toBe('');  // the tiny SD2 file declares nothing
      expect(ins.predictionSource).toBe('');
      expect(def.info.predictionSource).toBe('probe');
      expect(['eps', 'v']).toContain(def.info.prediction);
    } else {
      expect(def.info.prediction).toBe('eps');
      expect(def.info.predictionSource).toBe('file');  // the tiny files declare sdnode.prediction = eps
    }
    const v = await image(tiny.safetensors, { prediction: 'v' });
    expect(v.info.prediction).toBe('v');
    expect(v.info.predictionSource).toBe('option');
    const e = await image(tiny.safetensors, { prediction: 'eps' });
    expect(e.info.predictionSource).toBe('option');
    expect(v.data.equals(e.data)).toBe(false);  // v-prediction really changes the denoiser
    expect(def.data.equals(def.info.prediction === 'v' ? v.data : e.data)).toBe(true);
    await expect(loadModel(tiny.safetensors, { prediction: 'x0' as never })).rejects.toBeInstanceOf(InvalidOptionError);
  }, 300000);

  test('clip skip: 0 is the family default (2), other values change the image', async () => {
    const d0 = await image(tiny.safetensors, {}, { clipSkip: 0 });
    const d2 = await image(tiny.safetensors, {}, { clipSkip: 2 });
    const d1 = await image(tiny.safetensors, {}, { clipSkip: 1 });
    expect(d0.data.equals(d2.data)).toBe(true);
    expect(d1.data.equals(d2.data)).toBe(false);
    const err = await image(tiny.safetensors, {}, { clipSkip: 9 }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(SdnodeError);
    expect((err as Error).message).toMatch(/clip_?[sS]kip must be at most 2/);
  }, 300000);

  test('few-step settings run end to end: every new sampler and scheduler, 1-4 steps, cfg 1', async () => {
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 2 });
    try {
      const runs: [string, string, number][] = [
        ['euler', 'sgm_uniform', 1], // SD-Turbo / SDXL-Turbo style
        ['euler', 'simple', 4], // Lightning / Hyper: trailing timesteps
        ['ddim', 'sgm_uniform', 2],
        ['ipndm', 'discrete', 4],
        ['tcd', 'lcm', 3],
        ['lcm', 'lcm', 2],
        ['euler_a', 'ays', 3],
      ];
      const seen = new Set<string>();
      for (const [sampler, scheduler, steps] of runs) {
        const r = await model.generate({ ...base, cfgScale: 1, width: 64, height: 64, sampler, scheduler, steps } as never);
        expect(r.images[0].data.length).toBe(64 * 64 * 3);
        seen.add(r.images[0].data.toString('base64'));
      }
      expect(seen.size).toBe(runs.length); // each setting gives its own image
    } finally {
      await model.dispose();
    }
  }, 300000);

  test('sizes off the U-Net multiple fail with the rule; SDXL takes multiples of 32', async () => {
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 2 });
    try {
      const mult = family === 'sdxl' ? 32 : 64;
      const err = await model.generate({ ...base, width: 2 * mult + 8, height: 64 }).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(SdnodeError);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toContain(`a multiple of ${mult} (the rule of this ${family} model`);
      if (family === 'sdxl') {
        const r = await model.generate({ ...base, width: 96, height: 64 });  // multiples of 32 run on SDXL
        expect([r.images[0].width, r.images[0].height]).toEqual([96, 64]);
      }
    } finally {
      await model.dispose();
    }
  }, 300000);
});
