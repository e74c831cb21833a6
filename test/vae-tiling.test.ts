// Tiled VAE encode (and decode) on the tiny model through the JavaScript API and the sdnode CLI: img2img at 320x256
// (a 40x32 latent, so the 256-pixel tiles split the width in two) with vaeTiling true against false. The result
// differs only by the seam error (measured, asserted far above what another seed gives), the CLI's --vae-tiling
// gives the same pixels as the API, and on the CPU 'auto' does not tile. The seam error of the encoder alone is
// measured by the native tests (pipeline.tiled_vae_encode_*, vulkan.tiled_vae_encode_*); the golden model's in
// golden-tiling.test.ts.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GeneratedImage, loadModel } from '../lib/index';
import type { GenerateOptions } from '../lib/index';
import { describeTiny, repoRoot, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

const cli = path.join(repoRoot, 'dist', 'cli', 'cli.js');

function psnr(a: Buffer, b: Buffer): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  return se === 0 ? 99 : 10 * Math.log10((255 * 255) / (se / a.length));
}

describeTiny('tiled VAE encode (vaeTiling) on the tiny model', () => {
  let tiny: TinyModel;
  let dir = '';
  beforeAll(() => {
    tiny = tinyModel();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-vaetiling-'));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('img2img with vaeTiling true: seam error only; --vae-tiling gives the same image; auto = untiled on the CPU', async () => {
    const opts: GenerateOptions = {
      prompt: 'a red fox in the snow', width: 320, height: 256, steps: 4, cfgScale: 1, seed: 7, sampler: 'euler', strength: 0.5,
    };
    // a smooth init image (gradients), written as PNG for the CLI
    const W = 320, H = 256;
    const px = Buffer.alloc(W * H * 3);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let k = 0; k < 3; k++)
          px[(y * W + x) * 3 + k] = Math.round(127.5 + 120 * Math.sin((x / W) * 5 + k * 2) * Math.cos((y / H) * 3 - k));
    const initPng = path.join(dir, 'init.png');
    await new GeneratedImage({ data: px, width: W, height: H, channels: 3, seed: 0 }).save(initPng);

    const out: Record<string, Buffer> = {};
    for (const vaeTiling of [false, true, 'auto'] as const) {
      const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, vaeTiling, device: 'cpu' });
      try {
        out[String(vaeTiling)] = (await model.generate({ ...opts, initImage: initPng })).images[0].data;
        if (vaeTiling === false) out.seed = (await model.generate({ ...opts, seed: 8, initImage: initPng })).images[0].data;
      } finally {
        await model.dispose();
      }
    }
    const seam = psnr(out.false, out.true);
    const seed = psnr(out.false, out.seed);
    // eslint-disable-next-line no-console
    console.log(`tiny model img2img 320x256, tiled vs untiled VAE (encode + decode): ${seam.toFixed(1)} dB PSNR; another seed: ${seed.toFixed(1)} dB`);
    expect(out.true.equals(out.false)).toBe(false); // it did tile
    expect(seam).toBeGreaterThan(seed + 6);
    expect(out.auto.equals(out.false)).toBe(true); // 'auto' never tiles on the CPU

    if (!fs.existsSync(cli)) {
      // eslint-disable-next-line no-console
      console.warn(`SKIPPED: the CLI half of this test: ${cli} is not built (npm run build:ts)`);
      return;
    }
    const o = path.join(dir, 'cli.png');
    const r = spawnSync(process.execPath, [cli, 'generate', '--model', tiny.safetensors, '--tokenizer', tiny.merges,
      '--prompt', opts.prompt, '--width', '320', '--height', '256', '--steps', '4', '--cfg', '1', '--seed', '7',
      '--sampler', 'euler', '--init-img', initPng, '--strength', '0.5', '--device', 'cpu', '--vae-tiling', '--quiet',
      '--output', o], { encoding: 'utf8', timeout: 300000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { default: sharp } = await import('sharp');
    expect((await sharp(o).raw().toBuffer()).equals(out.true)).toBe(true);
  });
});
