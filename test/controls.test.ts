// img2img, inpainting masks and TAESD through the public API on the tiny random-weight SD1 model
// (scripts/make-tiny-model.js) and a small random TAESD file written here: option validation, the resize rule,
// typed errors for bad inputs (naming the option) after which the model stays usable, the start step of
// img2img, TAESD decode and previews, and the A1111 parameters text. The reference-image checks of the same
// features are in golden-controls.test.ts.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GeneratedImage, InvalidOptionError, ModelLoadError, loadModel, resolveGenerateOptions } from '../lib/index';
import type { GenerateOptions, Model, ProgressEvent } from '../lib/index';
import { readText } from './helpers/png';
import { writeTinyTaesd } from './helpers/taesd';
import { describeTiny, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

const cheap: GenerateOptions = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 4, cfgScale: 1, seed: 7, sampler: 'euler' };

describe('image options (no model)', () => {
  test('strength, mask and maskBlur need what they act on; wrong forms name the option', () => {
    const opt = (o: Record<string, unknown>): string => {
      try {
        resolveGenerateOptions({ prompt: 'x', ...o });
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidOptionError);
        return (e as InvalidOptionError).option;
      }
      return '';
    };
    expect(opt({ strength: 0.5 })).toBe('strength');
    expect(opt({ mask: 'm.png' })).toBe('mask');
    expect(opt({ initImage: 'a.png', maskBlur: 4 })).toBe('maskBlur');
    expect(opt({ initImage: 'a.png', strength: 1.5 })).toBe('strength');
    expect(opt({ initImage: 42 })).toBe('initImage');
    expect(opt({ initImage: '' })).toBe('initImage');
    expect(opt({ initImage: { data: new Uint8Array(5), width: 2, height: 2, channels: 3 } })).toBe('initImage');
    expect(opt({ decoder: 'vqgan' })).toBe('decoder');
    const r = resolveGenerateOptions({ prompt: 'x', initImage: 'a.png' });
    expect(r.strength).toBe(0.75);
    expect(r.decoder).toBe('vae');
    expect(resolveGenerateOptions({ prompt: 'x' }).strength).toBeUndefined();
  });
});

describeTiny('img2img, inpainting and TAESD on the tiny model', () => {
  let tiny: TinyModel;
  let model: Model;
  let dir = '';
  let taesd = '';
  let base: GeneratedImage;
  beforeAll(async () => {
    tiny = tinyModel();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-controls-'));
    taesd = path.join(dir, 'taesd.safetensors');
    writeTinyTaesd(taesd);
    model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, taesdPath: taesd });
    base = (await model.generate(cheap)).images[0];
  });
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('img2img runs floor(steps * strength) + 1 steps from the init image, deterministically', async () => {
    const steps: number[] = [];
    const onProgress = (e: ProgressEvent): void => {
      if (e.phase === 'sample') steps.push(e.steps);
    };
    // raw pixels (a generated image) as the init image
    const a = await model.generate({ ...cheap, initImage: base, strength: 0.5 }, { onProgress });
    expect(steps[0]).toBe(3); // t = floor(4 x 0.5) = 2: the last t + 1 = 3 steps of the schedule
    const b = await model.generate({ ...cheap, initImage: await base.toPNG(), strength: 0.5 });
    expect(a.images[0].data.equals(b.images[0].data)).toBe(true); // PNG buffer == raw pixels
    expect(a.images[0].data.equals(base.data)).toBe(false);
    steps.length = 0;
    await model.generate({ ...cheap, initImage: base, strength: 0 }, { onProgress });
    expect(steps[0]).toBe(1);
    expect(a.images[0].infotext()).toContain('Denoising strength: 0.5');
    expect(a.parameters.strength).toBe(0.5);
    const png = await a.images[0].toPNG();
    expect(readText(png).parameters).toContain('Denoising strength: 0.5');
  });

  test('init images of another size are stretched to width x height', async () => {
    const big = await base.toPNG();
    const r = await model.generate({ ...cheap, width: 128, height: 64, initImage: big, strength: 0.25 });
    expect([r.images[0].width, r.images[0].height]).toEqual([128, 64]);
  });

  test('a mask keeps the latent outside it: unmasked area close to the init image', async () => {
    // mask: right half white (repaint), left half black (keep)
    const m = Buffer.alloc(64 * 64);
    for (let y = 0; y < 64; y++) for (let x = 32; x < 64; x++) m[y * 64 + x] = 255;
    const mask = { data: m, width: 64, height: 64, channels: 1 };
    const r = await model.generate({ ...cheap, seed: 99, initImage: base, mask, strength: 1 });
    const full = await model.generate({ ...cheap, seed: 99, initImage: base, strength: 1 });
    const diff = (img: GeneratedImage, x0: number, x1: number): number => {
      let d = 0;
      for (let y = 8; y < 56; y++) for (let x = x0; x < x1; x++) for (let c = 0; c < 3; c++) d += Math.abs(img.data[(y * 64 + x) * 3 + c] - base.data[(y * 64 + x) * 3 + c]);
      return d / (48 * (x1 - x0) * 3);
    };
    // the kept half stays near the init image (VAE round trip only), much nearer than without the mask
    expect(diff(r.images[0], 4, 24)).toBeLessThan(diff(full.images[0], 4, 24));
    expect(r.images[0].infotext()).toContain('Mask blur: 0');
    const blurred = await model.generate({ ...cheap, seed: 99, initImage: base, mask, maskBlur: 4, strength: 1 });
    expect(blurred.images[0].data.equals(r.images[0].data)).toBe(false);
  });

  test('bad inputs are typed errors naming the option, and the model stays usable', async () => {
    const cases: Array<[GenerateOptions, string, RegExp]> = [
      [{ ...cheap, initImage: Buffer.from('this is not an image') }, 'initImage', /not an image/],
      [{ ...cheap, initImage: path.join(dir, 'missing.png') }, 'initImage', /cannot read/],
      [{ ...cheap, initImage: base, mask: { data: Buffer.alloc(32 * 32), width: 32, height: 32, channels: 1 } }, 'mask', /32x32 but initImage is 64x64/],
      [{ ...cheap, initImage: base, mask: Buffer.from([1, 2, 3]) }, 'mask', /not an image/],
    ];
    for (const [o, option, msg] of cases) {
      const err = await model.generate(o).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).option).toBe(option);
      expect((err as Error).message).toMatch(msg);
    }
    const again = await model.generate(cheap);
    expect(again.images[0].data.equals(base.data)).toBe(true);
  });

  test('TAESD decode and previews; the VAE result is unchanged', async () => {
    const previews: GeneratedImage[] = [];
    const t = await model.generate({ ...cheap, decoder: 'taesd' }, { onPreview: (e) => previews.push(e.image), previewMethod: 'taesd' });
    expect([t.images[0].width, t.images[0].height]).toEqual([64, 64]);
    expect(t.images[0].data.equals(base.data)).toBe(false);
    expect(previews.length).toBe(cheap.steps);
    expect(previews.every((p) => p.width === 64 && p.height === 64)).toBe(true);
    // the last TAESD preview shows the final latent: the same pixels as the TAESD-decoded result
    expect(previews[previews.length - 1].data.equals(t.images[0].data)).toBe(true);
    // the same decoder weights under the original release's names decode identically
    const orig = path.join(dir, 'taesd_decoder.safetensors');
    writeTinyTaesd(orig, true);
    const m2 = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, taesdPath: orig });
    try {
      const t2 = await m2.generate({ ...cheap, decoder: 'taesd' });
      expect(t2.images[0].data.equals(t.images[0].data)).toBe(true);
    } finally {
      await m2.dispose();
    }
    const latent: GeneratedImage[] = [];
    await model.generate(cheap, { onPreview: (e) => latent.push(e.image) });
    expect(latent[0].width).toBe(8); // latent previews are 1/8 size
    expect((await model.generate(cheap)).images[0].data.equals(base.data)).toBe(true);
  });

  test('TAESD without taesdPath, and a missing or wrong TAESD file, are typed errors', async () => {
    const plain = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    try {
      const err = await plain.generate({ ...cheap, decoder: 'taesd' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).option).toBe('decoder');
      expect((err as Error).message).toMatch(/taesdPath/);
      const err2 = await plain.generate(cheap, { onPreview: () => undefined, previewMethod: 'taesd' }).catch((e: unknown) => e);
      expect((err2 as InvalidOptionError).option).toBe('previewMethod');
      await plain.generate(cheap); // still usable
    } finally {
      await plain.dispose();
    }
    const missing = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, taesdPath: path.join(dir, 'nope.safetensors') }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ModelLoadError);
    expect((missing as ModelLoadError).code).toBe('NotFound');
    expect((missing as Error).message).toMatch(/taesdPath/);
    const wrong = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, taesdPath: tiny.safetensors }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(ModelLoadError);
    expect((wrong as Error).message).toMatch(/not a TAESD file/);
  });
});

// The native CLI reads --init-img / --mask PNGs with its own decoder: sharp's PNGs (zlib-compressed, adaptive row
// filters) must give the same pixels, hence the same image as the JavaScript API.
const cli = path.join(__dirname, '..', 'build', 'bin', process.platform === 'win32' ? 'sdn_cli.exe' : 'sdn_cli');
(fs.existsSync(cli) ? describeTiny : describe.skip)('sdn_cli --init-img / --mask on the tiny model', () => {
  let tiny: TinyModel;
  let dir = '';
  beforeAll(() => {
    tiny = tinyModel();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-controls-cli-'));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  const run = (args: string[]) =>
    spawnSync(cli, ['generate', '--model', tiny.safetensors, '--tokenizer', tiny.merges, '--prompt', 'a red fox in the snow',
      '--width', '64', '--height', '64', '--steps', '4', '--cfg', '1', '--sampler', 'euler', '--seed', '7', '--quiet', ...args],
    { encoding: 'utf8', timeout: 300000 });

  test('same image as the API from sharp-written PNGs; bad files and sizes are errors naming the flag', async () => {
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    try {
      const init = (await model.generate(cheap)).images[0];
      const initPng = path.join(dir, 'init.png');
      await init.save(initPng);
      const m = Buffer.alloc(64 * 64);
      for (let i = 0; i < m.length; i++) m[i] = (i % 64) * 4 > 128 ? 255 : (i % 64) * 2;
      const maskPng = path.join(dir, 'mask.png');
      await new GeneratedImage({ data: m, width: 64, height: 64, channels: 1, seed: 0 }).save(maskPng);
      const api = await model.generate({ ...cheap, initImage: initPng, mask: maskPng, strength: 0.6 });
      const out = path.join(dir, 'cli.png');
      const r = run(['--init-img', initPng, '--mask', maskPng, '--strength', '0.6', '--output', out]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const { default: sharp } = await import('sharp');
      const cliPixels = await sharp(out).raw().toBuffer();
      expect(cliPixels.equals(api.images[0].data)).toBe(true);

      const notPng = path.join(dir, 'not.png');
      fs.writeFileSync(notPng, 'hello');
      const bad = run(['--init-img', notPng, '--output', out]);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/--init-img: .*not a PNG/);
      const small = path.join(dir, 'small.png');
      await new GeneratedImage({ data: Buffer.alloc(32 * 32 * 3), width: 32, height: 32, channels: 3, seed: 0 }).save(small);
      const wrong = run(['--init-img', initPng, '--mask', small, '--output', out]);
      expect(wrong.status).toBe(1);
      expect(wrong.stderr).toMatch(/mask \(--mask\) is 32x32/);
    } finally {
      await model.dispose();
    }
  });
});
