// The public API end to end on a real (tiny, random-weight) SD1 model made by scripts/make-tiny-model.js: all
// three file forms, determinism, progress, previews, cancellation in every phase, queueing, memory over 20 cycles,
// quantize-on-load, convert -> inspect -> load, and the PNG metadata of real results.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AbortError, convert, GeneratedImage, inspect, InvalidOptionError, loadModel } from '../lib/index';
import type { GenerateOptions, Model, ProgressEvent } from '../lib/index';
import { maxEventLoopLag } from './helpers/lag';
import { readText } from './helpers/png';
import { describeTiny, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

// 64x64 (8x8 latent), cfg 1 (one UNet pass per step): the cheapest real generation.
const cheap: GenerateOptions = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, cfgScale: 1, seed: 42 };

describeTiny('tiny SD1 model', () => {
  let tiny: TinyModel;
  let model: Model;
  beforeAll(async () => {
    tiny = tinyModel();
    model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
  });
  afterAll(() => model?.dispose());

  test('inspect', async () => {
    const info = await inspect(tiny.safetensors);
    expect(info).toMatchObject({ format: 'safetensors', family: 'sd1', variant: 'base', runnable: true });
    expect(info.tensorCount).toBeGreaterThan(900);
    expect(info.tensorsByType.f32).toBe(info.tensorCount);
    expect(info.parameterCount).toBeGreaterThan(10_000_000);
    expect(info.sizeBytes).toBeGreaterThanOrEqual(info.parameterCount * 4);
    expect(model.info.family).toBe('sd1');
  });

  test('sizes the model cannot take are typed errors from the engine', async () => {
    // SD1's UNet halves the latent three times: this engine wants sides that are multiples of 64 (TS accepts 8s).
    const err = await model.generate({ ...cheap, width: 96 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).option).toBe('width');
  });

  test('same seed, same image; another seed, another image; batch seeds', async () => {
    const a = await model.generate(cheap);
    const b = await model.generate(cheap);
    const c = await model.generate({ ...cheap, seed: 43 });
    expect(a.images[0].data.equals(b.images[0].data)).toBe(true);
    expect(a.images[0].data.equals(c.images[0].data)).toBe(false);
    expect([a.images[0].width, a.images[0].height, a.images[0].channels, a.images[0].seed]).toEqual([64, 64, 3, 42]);
    const batch = await model.generate({ ...cheap, batchCount: 2 });
    expect(batch.images.map((i) => i.seed)).toEqual([42, 43]);
    expect(batch.images[0].data.equals(a.images[0].data)).toBe(true);
    expect(batch.images[1].data.equals(c.images[0].data)).toBe(true);
  });

  test('GGUF and diffusers forms give the same image as the safetensors file', async () => {
    const ref = (await model.generate(cheap)).images[0].data;
    for (const source of [tiny.gguf, tiny.diffusers]) {
      const m = await loadModel(source);
      try {
        const img = (await m.generate(cheap)).images[0].data;
        expect(img.equals(ref)).toBe(true);
      } finally {
        await m.dispose();
      }
    }
  });

  test('separate parts { unet, vae, textEncoder, tokenizer } give the same image as the diffusers folder', async () => {
    const d = tiny.diffusers;
    const parts = {
      unet: path.join(d, 'unet', 'diffusion_pytorch_model.safetensors'),
      vae: path.join(d, 'vae', 'diffusion_pytorch_model.safetensors'),
      textEncoder: path.join(d, 'text_encoder', 'model.safetensors'),
      tokenizer: path.join(d, 'tokenizer', 'merges.txt'),
    };
    const model2 = await loadModel(parts);
    try {
      expect(model2.source).toEqual(parts);
      const ref = (await model.generate(cheap)).images[0].data;
      expect((await model2.generate(cheap)).images[0].data.equals(ref)).toBe(true);
    } finally {
      await model2.dispose();
    }
  });

  test('the event loop stays responsive during a real generation (setInterval lag < 50 ms)', async () => {
    const maxLag = await maxEventLoopLag(() => model.generate({ ...cheap, steps: 3, cfgScale: 7 }, { onProgress: () => {} }));
    expect(maxLag).toBeLessThan(50);
  });

  test('progress is monotonic and complete; previews are latent-sized', async () => {
    const ev: ProgressEvent[] = [];
    const previews: Array<{ step: number; image: GeneratedImage }> = [];
    await model.generate({ ...cheap, width: 128, steps: 3, batchCount: 2 }, { onProgress: (e) => ev.push(e), onPreview: (p) => previews.push(p) });
    expect(ev.map((e) => `${e.phase}${e.image}:${e.step}/${e.steps}`)).toEqual([
      'encode0:0/1',
      'encode0:1/1',
      ...[0, 1].flatMap((i) => [0, 1, 2, 3].map((s) => `sample${i}:${s}/3`)),
      'decode0:0/2',
      'decode0:1/2',
      'decode1:1/2',
      'decode1:2/2',
    ]);
    for (let i = 1; i < ev.length; i++) expect(ev[i].elapsedMs).toBeGreaterThanOrEqual(ev[i - 1].elapsedMs);
    expect(ev[ev.length - 1].etaMs).toBe(0);
    expect(previews.length).toBeGreaterThan(0);
    for (const p of previews) {
      expect(p.step).toBeGreaterThanOrEqual(1);
      expect(p.step).toBeLessThanOrEqual(3);
      expect([p.image.width, p.image.height, p.image.channels]).toEqual([16, 8, 3]);
    }
  });

  test('abort before start, mid-sampling and mid-decode', async () => {
    await expect(model.generate(cheap, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    for (const phase of ['sample', 'decode'] as const) {
      const ac = new AbortController();
      const seen: string[] = [];
      const err = await model
        .generate({ ...cheap, steps: 20 }, {
          signal: ac.signal,
          onProgress: (e) => {
            seen.push(`${e.phase}${e.step}`);
            if (e.phase === phase && (phase === 'decode' || e.step >= 1)) ac.abort();
          },
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AbortError);
      if (phase === 'sample') expect(seen).not.toContain('sample20');
    }
    // the model still works afterwards
    expect((await model.generate(cheap)).images).toHaveLength(1);
  });

  test('queued calls with some aborted all settle, the others in order', async () => {
    const order: number[] = [];
    const acs = [0, 1, 2, 3].map(() => new AbortController());
    const calls = acs.map((ac, i) =>
      model.generate({ ...cheap, steps: 1, seed: 100 + i }, { signal: ac.signal }).then((r) => {
        order.push(i);
        return r;
      }),
    );
    acs[1].abort();
    acs[2].abort();
    const settled = await Promise.allSettled(calls);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(order).toEqual([0, 3]);
    expect(model.pending).toBe(0);
  });

  test('RSS returns to baseline over 20 cycles (completed + aborted runs)', async () => {
    const cycle = async (): Promise<void> => {
      await model.generate({ ...cheap, steps: 1 });
      const ac = new AbortController();
      await model
        .generate({ ...cheap, steps: 10 }, { signal: ac.signal, onProgress: (e) => e.phase === 'sample' && e.step >= 1 && ac.abort() })
        .catch(() => undefined);
    };
    await cycle();
    await cycle();
    const baseline = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) await cycle();
    const growth = process.memoryUsage().rss - baseline;
    expect(growth).toBeLessThan(32 << 20);
  });

  test('PNG of a real result carries A1111 parameters with the model hash', async () => {
    const r = await model.generate({ ...cheap, negativePrompt: 'blurry', cfgScale: 5, clipSkip: 2 });
    const png = await r.images[0].toPNG();
    const hash = createHash('sha256').update(fs.readFileSync(tiny.safetensors)).digest('hex').slice(0, 10);
    expect(readText(png).parameters).toBe(
      'a red fox in the snow\nNegative prompt: blurry\n' +
        `Steps: 2, Sampler: Euler a, CFG scale: 5, Seed: 42, Size: 64x64, Model hash: ${hash}, Model: tiny-sd1, Clip skip: 2, Version: sdnode`,
    );
  });

  test('quantize on load (q8_0) generates a close image', async () => {
    const q = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, weightType: 'q8_0' });
    try {
      const ref = (await model.generate(cheap)).images[0].data;
      const img = (await q.generate(cheap)).images[0].data;
      let sum = 0;
      for (let i = 0; i < ref.length; i++) sum += Math.abs(ref[i] - img[i]);
      expect(sum / ref.length).toBeLessThan(16); // mean absolute difference in 0..255
    } finally {
      await q.dispose();
    }
  });

  test('convert to q8_0 GGUF with progress, inspect it, load it (merges embedded)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-convert-'));
    try {
      const out = path.join(dir, 'tiny-q8.gguf');
      const progress: number[] = [];
      const r = await convert(tiny.safetensors, out, { type: 'q8_0', vaeType: 'f16', tokenizerPath: tiny.merges, onProgress: (e) => progress.push(e.done / e.total) });
      expect(r.tensorCount).toBeGreaterThan(900);
      expect(r.bytesOut).toBeLessThan(r.bytesIn);
      expect(r.tensorsByType.q8_0).toBeGreaterThan(0);
      expect(progress[progress.length - 1]).toBe(1);
      for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1]);
      const info = await inspect(out);
      expect(info).toMatchObject({ format: 'gguf', family: 'sd1', hasTokenizer: true });
      expect(info.tensorsByType.q8_0).toBe(r.tensorsByType.q8_0);
      const m = await loadModel(out);
      try {
        expect((await m.generate({ ...cheap, steps: 1 })).images[0].width).toBe(64);
      } finally {
        await m.dispose();
      }
      // abort: rejects with AbortError and leaves no partial file
      const ac = new AbortController();
      const aborted = path.join(dir, 'aborted.gguf');
      const err = await convert(tiny.safetensors, aborted, { type: 'q8_0', signal: ac.signal, onProgress: () => ac.abort() }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AbortError);
      expect(fs.existsSync(aborted)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
