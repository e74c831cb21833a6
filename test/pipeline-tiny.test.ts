// End-to-end txt2img through the native CLI (Model::load -> generate -> PNG) on tiny generated checkpoints
// (scripts/make-tiny-model.js): the same weights as .safetensors, .gguf and a diffusers folder must give the same
// image; thread count must not change it; the tokenizer search and its NotFound message; bad parameters.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const repoRoot = path.resolve(__dirname, '..');
const cli = path.join(repoRoot, 'build', 'bin', process.platform === 'win32' ? 'sdn_cli.exe' : 'sdn_cli');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { makeTinyModel } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js'));

function pngPixels(file: string): Buffer {
  // our PNGs: one IDAT of stored deflate blocks; return the raw scanlines (compared byte for byte)
  const data = fs.readFileSync(file);
  let pos = 8;
  const idat: Buffer[] = [];
  while (pos < data.length) {
    const n = data.readUInt32BE(pos);
    const kind = data.toString('latin1', pos + 4, pos + 8);
    if (kind === 'IDAT') idat.push(data.subarray(pos + 8, pos + 8 + n));
    pos += 12 + n;
  }
  return require('zlib').inflateSync(Buffer.concat(idat));
}

const haveCli = fs.existsSync(cli);
(haveCli ? describe : describe.skip)('tiny SD1 checkpoints through sdn_cli', () => {
  let dir = '';
  let tiny: { safetensors: string; gguf: string; diffusers: string; merges: string };
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-tiny-'));
    tiny = makeTinyModel({ outDir: dir, dtype: 'f16', formats: ['safetensors', 'gguf', 'diffusers'] });
  }, 120000);
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function gen(model: string, out: string, extra: string[] = [], env: NodeJS.ProcessEnv = process.env) {
    return spawnSync(
      cli,
      ['generate', '--model', model, '--prompt', 'a (red:1.2) fox, [snow]', '--negative', 'blurry', '--width', '64',
        '--height', '64', '--steps', '3', '--sampler', 'euler_a', '--seed', '5', '--output', out, '--quiet', ...extra],
      { encoding: 'utf8', env, timeout: 300000 },
    );
  }

  test('safetensors, GGUF and diffusers forms give the same image', () => {
    const outs: Buffer[] = [];
    for (const [name, model] of [['st', tiny.safetensors], ['gguf', tiny.gguf], ['diff', tiny.diffusers]]) {
      const out = path.join(dir, `${name}.png`);
      const r = gen(model, out, name === 'diff' ? [] : ['--tokenizer', tiny.merges]);  // diffusers: tokenizer/merges.txt
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      outs.push(pngPixels(out));
    }
    expect(outs[0].length).toBe(64 * (1 + 64 * 3));
    expect(outs[1].equals(outs[0])).toBe(true);
    expect(outs[2].equals(outs[0])).toBe(true);
  }, 300000);

  test('separate unet / vae / text-encoder files give the same image as the single file', () => {
    const d = tiny.diffusers;
    // component file of a diffusers folder (diffusion_pytorch_model[.fp16].safetensors, model[.fp16].safetensors)
    const part = (sub: string) => {
      const f = fs.readdirSync(path.join(d, sub)).find((n) => n.endsWith('.safetensors'));
      if (!f) throw new Error(`no safetensors file in ${path.join(d, sub)}`);
      return path.join(d, sub, f);
    };
    const ref = path.join(dir, 'parts-ref.png');
    const out = path.join(dir, 'parts.png');
    const mixed = path.join(dir, 'parts-mixed.png');
    expect(gen(tiny.safetensors, ref, ['--tokenizer', tiny.merges]).status).toBe(0);
    const r = spawnSync(cli, ['generate', '--unet', part('unet'), '--vae', part('vae'),
      '--text-encoder', part('text_encoder'), '--tokenizer', tiny.merges,
      '--prompt', 'a (red:1.2) fox, [snow]', '--negative', 'blurry', '--width', '64', '--height', '64', '--steps', '3',
      '--sampler', 'euler_a', '--seed', '5', '--output', out, '--quiet'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(pngPixels(out).equals(pngPixels(ref))).toBe(true);
    // a part overrides that component of a full checkpoint
    const m = gen(tiny.safetensors, mixed, ['--tokenizer', tiny.merges, '--vae', part('vae')]);
    expect(m.status).toBe(0);
    expect(pngPixels(mixed).equals(pngPixels(ref))).toBe(true);
  }, 300000);

  test('1 and 2 threads give the same image; another seed a different one', () => {
    const a = path.join(dir, 't1.png');
    const b = path.join(dir, 't2.png');
    const c = path.join(dir, 's6.png');
    expect(gen(tiny.safetensors, a, ['--tokenizer', tiny.merges, '--threads', '1']).status).toBe(0);
    expect(gen(tiny.safetensors, b, ['--tokenizer', tiny.merges, '--threads', '2']).status).toBe(0);
    expect(gen(tiny.safetensors, c, ['--tokenizer', tiny.merges, '--seed', '6']).status).toBe(0);
    const pa = pngPixels(a);
    const pb = pngPixels(b);
    let maxDiff = 0;
    for (let i = 0; i < pa.length; i++) maxDiff = Math.max(maxDiff, Math.abs(pa[i] - pb[i]));
    expect(maxDiff).toBeLessThanOrEqual(1);  // u8 rounding boundary at most
    expect(pngPixels(c).equals(pa)).toBe(false);
  }, 300000);

  test('batch of 2 writes two images with seeds seed and seed+1', () => {
    const out = path.join(dir, 'batch.png');
    const r = spawnSync(cli, ['generate', '--model', tiny.safetensors, '--tokenizer', tiny.merges, '--prompt', 'fox',
      '--width', '64', '--height', '64', '--steps', '2', '--seed', '9', '--batch', '2', '--output', out], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('seed 9');
    expect(r.stderr).toContain('seed 10');
    expect(fs.existsSync(path.join(dir, 'batch-0.png'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'batch-1.png'))).toBe(true);
  }, 300000);

  test('no tokenizer merges anywhere: NotFound listing the options', () => {
    const cache = path.join(dir, 'empty-cache');
    const r = gen(tiny.safetensors, path.join(dir, 'x.png'), [], { ...process.env, SDNODE_CACHE_DIR: cache });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('NotFound');
    expect(r.stderr).toContain('tokenizerPath');
    expect(r.stderr).toContain('--tokenizer');
    expect(r.stderr).toContain('tokenizer/merges.txt');
    expect(r.stderr).toContain(path.join(cache, 'clip-merges.txt'));
    // the per-user cache copy is used when present
    fs.mkdirSync(cache, { recursive: true });
    fs.copyFileSync(tiny.merges, path.join(cache, 'clip-merges.txt'));
    const ok = gen(tiny.safetensors, path.join(dir, 'y.png'), [], { ...process.env, SDNODE_CACHE_DIR: cache });
    expect(ok.status).toBe(0);
  }, 300000);

  test('bad parameters are InvalidArgument naming the parameter', () => {
    const cases: [string[], string][] = [
      [['--width', '100'], 'width'],
      [['--steps', '0'], 'steps'],
      [['--sampler', 'nope'], 'sampler'],
      [['--rng', 'nope'], 'rng'],
      [['--clip-skip', '-1'], 'clip_skip'],
      [['--width', '72'], 'width'],  // multiple of 8 but not of the U-Net's 64
      [['--weight-type', 'q9_9'], 'weight_type'],
    ];
    for (const [extra, word] of cases) {
      const r = gen(tiny.safetensors, path.join(dir, 'bad.png'), ['--tokenizer', tiny.merges, ...extra]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('InvalidArgument');
      expect(r.stderr).toContain(word);
    }
  }, 300000);

  test('quantize on load (q8_0) runs and stays close to f16', () => {
    const a = path.join(dir, 'f16.png');
    const b = path.join(dir, 'q8.png');
    expect(gen(tiny.safetensors, a, ['--tokenizer', tiny.merges]).status).toBe(0);
    const r = gen(tiny.safetensors, b, ['--tokenizer', tiny.merges, '--weight-type', 'q8_0']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(pngPixels(b).length).toBe(pngPixels(a).length);
  }, 300000);
});
if (!haveCli) {
  // eslint-disable-next-line no-console
  console.warn(`tiny pipeline tests SKIPPED: ${cli} is not built (npm run build:native)`);
}
