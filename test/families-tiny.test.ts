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

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { writeSafetensors } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js'));

/** Rows of one tensor of a safetensors file, as its raw bytes (F16 or F32), for building test embeddings. */
function tensorRows(file: string, name: string, rows: number[]): { dtype: string; width: number; data: Buffer } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const t = header[name];
  if (!t) throw new Error(`${name} is not in ${file}`);
  const size = t.dtype === 'F16' ? 2 : 4;
  const width = t.shape[1];
  const start = 8 + n + t.data_offsets[0];
  return { dtype: t.dtype, width, data: Buffer.concat(rows.map((r) => buf.subarray(start + r * width * size, start + (r + 1) * width * size))) };
}

/** CLIP vocabulary id of a one-letter word ("x" -> "x</w>"): 256 byte symbols, then the same with </w>, printable
 * ASCII first in byte order (bytes_to_unicode). The tiny merges never merge a single symbol. */
const letterId = (ch: string) => 256 + ch.charCodeAt(0) - 33;

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

  test('textual inversion: an embedding made of token rows gives exactly the image of those words; wrong layouts are typed errors', async () => {
    const embDir = path.join(dir, 'embeddings');
    fs.mkdirSync(embDir, { recursive: true });
    const ids = [letterId('x'), letterId('q')];
    const t1 = family === 'sdxl' ? 'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight' : 'cond_stage_model.model.token_embedding.weight';
    const r1 = tensorRows(tiny.safetensors, t1, ids);
    const t = (name: string, r: { dtype: string; width: number; data: Buffer }) => ({ name, dtype: r.dtype.toLowerCase(), shape: [ids.length, r.width], data: r.data });
    if (family === 'sdxl') {
      const r2 = tensorRows(tiny.safetensors, 'conditioner.embedders.1.model.token_embedding.weight', ids);
      writeSafetensors(path.join(embDir, 'myemb.safetensors'), [t('clip_g', r2), t('clip_l', r1)]);
      writeSafetensors(path.join(embDir, 'wrongfamily.safetensors'), [t('emb_params', r1)]); // an SD 1.x/2.x layout
    } else {
      writeSafetensors(path.join(embDir, 'myemb.safetensors'), [t('emb_params', r1)]);
      writeSafetensors(path.join(embDir, 'wrongfamily.safetensors'), [t('clip_g', r1), t('clip_l', r1)]); // SDXL layout
    }
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 2 });
    try {
      const gen = (prompt: string, more: Record<string, unknown> = {}) =>
        model.generate({ ...base, prompt, width: 64, height: 64, embeddingDir: embDir, ...more }).then((r) => r.images[0].data);
      const words = await gen('a x q fox');
      expect((await gen('a myemb fox')).equals(words)).toBe(true);
      expect((await gen('a embedding:myemb fox')).equals(words)).toBe(true);
      expect((await gen('a myemb fox', { embeddingDir: undefined })).equals(words)).toBe(false); // then it is plain text
      const err = await gen('a wrongfamily fox').catch((x: unknown) => x);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toContain('wrongfamily.safetensors');
      expect((err as Error).message).toMatch(family === 'sdxl' ? /needs an embedding with clip_l .* and clip_g/ : /SDXL embedding .* but the model is SD 2\.x/);
      expect((err as Error).message).toContain('embeddingDir');
      expect((await gen('a myemb fox')).equals(words)).toBe(true); // the model is still usable
    } finally {
      await model.dispose();
    }
  }, 300000);

  test('LoRA: kohya names for this family (fused OpenCLIP q/k/v included) all match and change the image; an SDXL LoRA on SD 2.x is a typed error', async () => {
    const loraDir = path.join(dir, 'loras');
    fs.mkdirSync(loraDir, { recursive: true });
    const f32 = (name: string, shape: number[], seed: number) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Buffer.alloc(n * 4);
      for (let i = 0; i < n; ++i) data.writeFloatLE(0.3 * Math.sin(seed * 7.1 + i * 0.37), i * 4);
      return { name, dtype: 'f32', shape, data };
    };
    const pair = (module: string, out: number, inp: number, seed: number) => [
      f32(`${module}.lora_down.weight`, [4, inp], seed), f32(`${module}.lora_up.weight`, [out, 4], seed + 1), f32(`${module}.alpha`, [], seed + 2),
    ];
    const xl = [
      ...pair('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', 64, 64, 1),
      ...pair('lora_te1_text_model_encoder_layers_0_mlp_fc1', 128, 32, 4),
      ...pair('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', 32, 32, 7),
      ...pair('lora_te2_text_model_encoder_layers_1_self_attn_v_proj', 32, 32, 10),
    ];
    const sd2 = [
      ...pair('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k', 32, 32, 1),
      ...pair('lora_te_text_model_encoder_layers_0_self_attn_q_proj', 32, 32, 4),
      ...pair('lora_te_text_model_encoder_layers_1_mlp_fc2', 32, 128, 7),
    ];
    for (const t of [...xl, ...sd2]) if (t.shape.length === 0) t.data.writeFloatLE(2, 0); // alpha 2 (rank 4)
    writeSafetensors(path.join(loraDir, 'xl.safetensors'), xl);
    writeSafetensors(path.join(loraDir, 'sd2.safetensors'), sd2);
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 2 });
    try {
      const gen = (prompt: string) => model.generate({ ...base, prompt, width: 64, height: 64, loraDir });
      const plain = await gen('a fox');
      const name = family === 'sdxl' ? 'xl' : 'sd2';
      const r = await gen(`a fox <lora:${name}:0.9>`);
      expect(r.warnings.filter((w) => /LoRA|lora|tensors were not applied/.test(w))).toEqual([]);
      expect(r.adapterBytes).toBeGreaterThan(0);
      expect(r.images[0].data.equals(plain.images[0].data)).toBe(false);
      expect((await gen('a fox')).images[0].data.equals(plain.images[0].data)).toBe(true); // removed again
      if (family === 'sd2') {
        const err = await gen('a fox <lora:xl:1>').catch((x: unknown) => x);
        expect(err).toBeInstanceOf(InvalidOptionError);
        expect((err as Error).message).toMatch(/xl\.safetensors: this LoRA is for SDXL .* but the model is SD 2\.x/);
      }
    } finally {
      await model.dispose();
    }
  }, 300000);
});
