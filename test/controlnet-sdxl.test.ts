// SDXL ControlNets (diffusers layout) end to end, on tiny generated files: a tiny SDXL checkpoint
// (scripts/make-tiny-model.js --family sdxl) and tiny ControlNets of its dimensions (scripts/make-tiny-controlnet.js:
// controlnet_cond_embedding.*, down_blocks.*, mid_block.*, controlnet_down_blocks.N, controlnet_mid_block,
// add_embedding.*). The residuals themselves are checked against an independent numpy forward in the native test
// adapters.controlnet_diffusers_sdxl_and_sd1_vs_numpy_reference; here, through the JS API and the CLI: the residuals
// change the image; strength 0 gives the image without ControlNet bit for bit; start/end select exactly the steps
// they name (checked on the per-step latent previews); the lllyasviel layout and our converter's GGUF of the same
// ControlNet, and its diffusers folder, give the same image; the SD 1.x diffusers layout runs too; a ControlNet of the other family is an
// InvalidOptionError naming the file and what to use, and the model keeps working.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { convert, InvalidOptionError, loadModel, type Model } from '../lib/index';
import { readText } from './helpers/png';

const repoRoot = path.resolve(__dirname, '..');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { makeTinyModel } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js'));
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { makeTinyControlNet } = require(path.join(repoRoot, 'scripts', 'make-tiny-controlnet.js'));

jest.setTimeout(5 * 60 * 1000);

const SIZE = 128; // latent 16x16: previews are 16x16 too
const base = { prompt: 'a red fox', negativePrompt: 'blurry', width: SIZE, height: SIZE, steps: 4, sampler: 'euler' as const, seed: 11, cfgScale: 5 };

/** A control image like an edge map: white outlines of a square and a diagonal on black. */
function edges(): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const data = new Uint8Array(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const onSquare = (x === 32 || x === 96 || y === 32 || y === 96) && x >= 32 && x <= 96 && y >= 32 && y <= 96;
      if (onSquare || Math.abs(x - y) < 2) data.fill(255, (y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3);
    }
  return { data, width: SIZE, height: SIZE, channels: 3 };
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

describe('SDXL ControlNet (diffusers layout) on a tiny SDXL model', () => {
  let dir = '';
  let xl: { safetensors: string; merges: string };
  let sd1: { safetensors: string; merges: string };
  let cnXl = '';
  let cnXlLl = '';
  let cnSd1 = '';
  let model: Model;
  const image = edges();
  const results = new Map<string, { data: Buffer; previews: Buffer[] }>();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-cnxl-'));
    xl = makeTinyModel({ outDir: dir, dtype: 'f16', family: 'sdxl', formats: ['safetensors'] });
    sd1 = makeTinyModel({ outDir: dir, dtype: 'f16', formats: ['safetensors'] });
    cnXl = makeTinyControlNet({ file: path.join(dir, 'xl-cn.safetensors'), family: 'sdxl', dtype: 'f16' }).file;
    cnXlLl = makeTinyControlNet({ file: path.join(dir, 'xl-cn-ll.safetensors'), family: 'sdxl', dtype: 'f16', layout: 'lllyasviel' }).file;
    cnSd1 = makeTinyControlNet({ file: path.join(dir, 'sd1-cn.safetensors'), family: 'sd1', dtype: 'f16' }).file;
    model = await loadModel(xl.safetensors, { tokenizerPath: xl.merges, threads: 2 });
    expect(model.info.family).toBe('sdxl');
  }, 120000);
  afterAll(async () => {
    await model?.dispose();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The image and the latent preview after every step; cached by key. */
  async function run(key: string, gen: Record<string, unknown> = {}, m: Model = model): Promise<{ data: Buffer; previews: Buffer[] }> {
    const hit = results.get(key);
    if (hit) return hit;
    const previews: Buffer[] = [];
    const r = await m.generate({ ...base, ...gen }, { onPreview: (p) => previews.push(Buffer.from(p.image.data)), previewEvery: 1 });
    const out = { data: r.images[0].data, previews };
    results.set(key, out);
    return out;
  }

  test('the residuals change the image; strength 0 gives the image without ControlNet, bit for bit', async () => {
    const none = await run('none');
    const full = await run('full', { controlNet: { model: cnXl, image } });
    const zero = await run('zero', { controlNet: { model: cnXl, image, strength: 0 } });
    const half = await run('half', { controlNet: { model: cnXl, image, strength: 0.5 } });
    expect(none.previews).toHaveLength(4);
    const d = meanAbsDiff(full.data, none.data);
    // eslint-disable-next-line no-console
    console.log(`tiny SDXL + tiny SDXL ControlNet: mean |full - none| ${d.toFixed(2)}, |half - none| ${meanAbsDiff(half.data, none.data).toFixed(2)} (8-bit levels)`);
    expect(d).toBeGreaterThan(2);
    expect(zero.data.equals(none.data)).toBe(true);
    expect(half.data.equals(none.data)).toBe(false);
    expect(half.data.equals(full.data)).toBe(false);
  });

  test('start/end select exactly the steps they name (latent previews after each of the 4 steps)', async () => {
    const none = await run('none');
    const full = await run('full', { controlNet: { model: cnXl, image } });
    // start 0.5: steps 2 and 3 (step i runs the ControlNet when start <= i/4 <= end)
    const late = await run('late', { controlNet: { model: cnXl, image, start: 0.5 } });
    expect(late.previews[0].equals(none.previews[0])).toBe(true);
    expect(late.previews[1].equals(none.previews[1])).toBe(true);
    expect(late.previews[2].equals(none.previews[2])).toBe(false);
    // end 0.25: steps 0 and 1
    const early = await run('early', { controlNet: { model: cnXl, image, end: 0.25 } });
    expect(early.previews[0].equals(full.previews[0])).toBe(true);
    expect(early.previews[1].equals(full.previews[1])).toBe(true);
    expect(early.previews[0].equals(none.previews[0])).toBe(false);
    expect(early.previews[2].equals(full.previews[2])).toBe(false);
    // a window with no step in it: no ControlNet at all
    const noneRun = await run('window-empty', { controlNet: { model: cnXl, image, start: 0.9 } });
    expect(noneRun.data.equals(none.data)).toBe(true);
  });

  test('the lllyasviel layout, our converter\'s GGUF and a diffusers folder of the same ControlNet give the same image', async () => {
    const full = await run('full', { controlNet: { model: cnXl, image } });
    const ll = await run('ll', { controlNet: { model: cnXlLl, image } });
    expect(ll.data.equals(full.data)).toBe(true);
    const gguf = path.join(dir, 'xl-cn.gguf');
    await convert(cnXl, gguf, { type: 'f16' });
    const g = await run('gguf', { controlNet: { model: gguf, image } });
    expect(g.data.equals(full.data)).toBe(true);
    // a diffusers ControlNet folder as downloaded (config.json + diffusion_pytorch_model.fp16.safetensors)
    const folder = path.join(dir, 'controlnet-tiny-sdxl');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify({ _class_name: 'ControlNetModel', addition_embed_type: 'text_time' }));
    fs.copyFileSync(cnXl, path.join(folder, 'diffusion_pytorch_model.fp16.safetensors'));
    const f = await run('folder', { controlNet: { model: folder, image } });
    expect(f.data.equals(full.data)).toBe(true);
    const empty = path.join(dir, 'empty-folder');
    fs.mkdirSync(empty);
    await expect(model.generate({ ...base, steps: 1, controlNet: { model: empty, image } })).rejects.toThrow(/empty-folder: a folder without ControlNet weights .*controlNet\.model/);
  });

  test('a ControlNet of the other family: InvalidOptionError naming the file and what to use; the model keeps working', async () => {
    const none = await run('none');
    const p = model.generate({ ...base, steps: 1, controlNet: { model: cnSd1, image } });
    await expect(p).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(p).rejects.toThrow(/sd1-cn\.safetensors: this ControlNet is for SD 1\.x .*but the model is SDXL .*use a ControlNet made for SDXL \(controlNet\.model \/ --control-net\)/);
    results.delete('none');
    expect((await run('none')).data.equals(none.data)).toBe(true);

    const m1 = await loadModel(sd1.safetensors, { tokenizerPath: sd1.merges, threads: 2 });
    try {
      const q = m1.generate({ ...base, steps: 1, controlNet: { model: cnXl, image } });
      await expect(q).rejects.toBeInstanceOf(InvalidOptionError);
      await expect(q).rejects.toThrow(/xl-cn\.safetensors: this ControlNet is for SDXL .*vector conditioning 1568 wide.*but the model is SD 1\.x .*use a ControlNet made for SD 1\.x/);
      // the SD 1.x layout with SDXL's 2048-wide context (no add_embedding): named SDXL by its width, as models are
      const wide = makeTinyControlNet({ file: path.join(dir, 'wide-cn.safetensors'), family: 'sd1', clipHidden: 2048 }).file;
      const w = m1.generate({ ...base, steps: 1, controlNet: { model: wide, image } });
      await expect(w).rejects.toThrow(/wide-cn\.safetensors: this ControlNet is for SDXL \(cross-attention width 2048, 32 channels, no vector conditioning\) but the model is SD 1\.x \(cross-attention width 32, 32 channels, no vector conditioning\): use a ControlNet made for SD 1\.x/);
      // the SD 1.x diffusers layout on the SD 1.x model
      const a = await run('sd1-none', { steps: 2 }, m1);
      const b = await run('sd1-cn', { steps: 2, controlNet: { model: cnSd1, image } }, m1);
      expect(meanAbsDiff(a.data, b.data)).toBeGreaterThan(2);
    } finally {
      await m1.dispose();
    }
  });

  test('CLI: sdnode generate --control-net --control-image --control-strength on the SDXL model', async () => {
    const cli = path.join(repoRoot, 'dist', 'cli', 'cli.js');
    if (!fs.existsSync(cli)) {
      const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(repoRoot, 'tsconfig.json')], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}\n${r.stderr}`);
    }
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const sharp = require('sharp');
    const png = path.join(dir, 'edges.png');
    await sharp(Buffer.from(image.data), { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toFile(png);
    const out = path.join(dir, 'cli.png');
    const r = spawnSync(process.execPath, [
      cli, 'generate', '--model', xl.safetensors, '--tokenizer', xl.merges, '--prompt', base.prompt, '--negative-prompt', base.negativePrompt,
      '-W', String(SIZE), '-H', String(SIZE), '--steps', '4', '--sampler', 'euler', '--seed', '11', '--cfg', '5', '--threads', '2', '--quiet',
      '--control-net', cnXl, '--control-image', png, '--control-strength', '0.5', '--output', out,
    ], { encoding: 'utf8', timeout: 240000 });
    if (r.status !== 0) throw new Error(`sdnode generate failed (${r.status}): ${r.stderr}`);
    const half = await run('half', { controlNet: { model: cnXl, image, strength: 0.5 } });
    const decoded: Buffer = await sharp(out).raw().toBuffer();
    expect(decoded.equals(half.data)).toBe(true);
    expect(readText(fs.readFileSync(out)).parameters).toMatch(/ControlNet 0: "Module: none, Model: xl-cn \[[0-9a-f]{8}\], Weight: 0\.5, Guidance Start: 0, Guidance End: 1"/);
  });
});
