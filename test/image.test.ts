// Image encoding: PNG with the A1111 `parameters` chunk (read back with our own PNG parser), JPEG and WebP
// (decoded back with sharp), save() by extension.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { GeneratedImage, InvalidOptionError, formatInfotext, resolveGenerateOptions } from '../lib/index';
import type { ImageParameters } from '../lib/index';
import { crc32, insertPngText } from '../lib/image';
import { readChunks, readText } from './helpers/png';

function testImage(params?: ImageParameters, w = 24, h = 16): GeneratedImage {
  const data = Buffer.alloc(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  return new GeneratedImage({ width: w, height: h, channels: 3, data, seed: params?.seed ?? 1 }, params);
}

const base = resolveGenerateOptions({
  prompt: 'a red fox in the snow',
  negativePrompt: 'blurry, low quality',
  seed: 42,
  width: 512,
  height: 512,
  clipSkip: 2,
});

describe('infotext', () => {
  test('A1111 format', () => {
    expect(formatInfotext({ ...base, model: { name: 'tiny-sd1' } }, 'abcdef0123')).toBe(
      'a red fox in the snow\nNegative prompt: blurry, low quality\n' +
        'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: abcdef0123, Model: tiny-sd1, Clip skip: 2, Version: sdnode',
    );
  });
  test('no negative line when empty; schedule type, RNG and quoting', () => {
    const t = formatInfotext({ ...base, negativePrompt: '', clipSkip: 1, sampler: 'dpm++2m', scheduler: 'karras', rng: 'cpu', cfgScale: 4.5, model: { name: 'a,b' } });
    expect(t).toBe('a red fox in the snow\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4.5, Seed: 42, Size: 512x512, Model: "a,b", RNG: CPU, Version: sdnode');
  });
});

describe('PNG', () => {
  test('crc32 of a known string', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('IEND'))).toBe(0xae426082);
  });

  test('parameters chunk round-trips (tEXt right after IHDR, valid CRCs, pixels intact)', async () => {
    const hash = jest.fn(async () => '0123456789');
    const img = testImage({ ...base, model: { name: 'tiny', hash } });
    const png = await img.toPNG();
    const chunks = readChunks(png);
    expect(chunks[0].type).toBe('IHDR');
    expect(chunks[1].type).toBe('tEXt');
    expect(chunks.every((c) => c.crcOk)).toBe(true);
    expect(readText(png).parameters).toBe(formatInfotext({ ...base, model: { name: 'tiny' } }, '0123456789'));
    expect(hash).toHaveBeenCalled();
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info).toMatchObject({ width: 24, height: 16, channels: 3 });
    expect(Buffer.compare(data, img.data)).toBe(0);
  });

  test('non-Latin-1 prompts go into an iTXt chunk as UTF-8', async () => {
    const prompt = '雪の中の赤い狐 🦊';
    const png = await testImage({ ...base, prompt }).toPNG();
    const chunks = readChunks(png);
    expect(chunks[1].type).toBe('iTXt');
    expect(readText(png).parameters.split('\n')[0]).toBe(prompt);
    expect((await sharp(png).metadata()).format).toBe('png');
  });

  test('Latin-1 text stays tEXt; parameters: false writes none; previews have none', async () => {
    const p = await testImage({ ...base, prompt: 'café crème' }).toPNG();
    expect(readChunks(p)[1].type).toBe('tEXt');
    expect(readText(p).parameters.split('\n')[0]).toBe('café crème');
    expect(readText(await testImage(base).toPNG({ parameters: false })).parameters).toBeUndefined();
    expect(readText(await testImage().toPNG()).parameters).toBeUndefined();
  });

  test('a failing model hash still writes the rest', async () => {
    const png = await testImage({ ...base, model: { name: 'm', hash: async () => { throw new Error('gone'); } } }).toPNG();
    expect(readText(png).parameters).toContain('Model: m');
    expect(readText(png).parameters).not.toContain('Model hash');
  });

  test('insertPngText rejects non-PNG input', () => {
    expect(() => insertPngText(Buffer.from('not a png at all, not at all, no'), 'k', 'v')).toThrow(/not a PNG/);
  });
});

describe('JPEG and WebP', () => {
  test('decode with sharp; parameters in EXIF', async () => {
    const img = testImage(base, 40, 32);
    const jpeg = await img.toJPEG({ quality: 80 });
    const jm = await sharp(jpeg).metadata();
    expect(jm).toMatchObject({ format: 'jpeg', width: 40, height: 32, channels: 3 });
    expect(jm.exif?.toString('latin1')).toContain('Negative prompt: blurry, low quality');
    const webp = await img.toWebP({ quality: 80 });
    const wm = await sharp(webp).metadata();
    expect(wm).toMatchObject({ format: 'webp', width: 40, height: 32 });
    expect(wm.exif?.toString('latin1')).toContain('Seed: 42');
    const lossless = await img.toWebP({ lossless: true });
    const { data } = await sharp(lossless).raw().toBuffer({ resolveWithObject: true });
    expect(Buffer.compare(data, img.data)).toBe(0);
  });

  test('bad quality', async () => {
    await expect(testImage().toJPEG({ quality: 0 })).rejects.toThrow('expected an integer from 1 to 100 for quality but received 0 (number)');
    await expect(testImage().toWebP({ quality: 101 })).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('save', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-img-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('format follows the extension', async () => {
    const img = testImage(base);
    for (const [ext, format] of [['png', 'png'], ['jpg', 'jpeg'], ['JPEG', 'jpeg'], ['webp', 'webp']]) {
      const f = path.join(dir, `out.${ext}`);
      await img.save(f);
      expect((await sharp(f).metadata()).format).toBe(format);
    }
    expect(readText(fs.readFileSync(path.join(dir, 'out.png'))).parameters).toContain('Seed: 42');
  });

  test('unknown extension', async () => {
    await expect(testImage().save(path.join(dir, 'out.gif'))).rejects.toThrow(
      /^expected a path ending in \.png, \.jpg, \.jpeg or \.webp for path but received ".*out\.gif" \(string\)$/,
    );
  });
});
