// What a new user meets on the first run: the shipped CLIP merges (no tokenizer step), the output path checked
// before any work, the model's size rule, the cached model hash, convert's .gguf check, --json errors and the
// progress bar on a narrow terminal.
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { convert, inspect, InvalidOptionError, loadModel, SdnodeError, CLIP_MERGES_SHA256 } from '../lib';
import { GeneratedImage } from '../lib/image';
import { ProgressBar } from '../lib/cli/progress';
import { shippedMergesPath } from '../lib/tokenizer';
import { describeTiny, repoRoot, tinyModel } from './helpers/tiny';

jest.setTimeout(5 * 60 * 1000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-firstrun-'));
// an empty per-user cache: no downloaded tokenizer, no recorded hashes
const cacheDir = path.join(tmp, 'cache');
const savedCache = process.env.SDNODE_CACHE_DIR;
beforeAll(() => {
  process.env.SDNODE_CACHE_DIR = cacheDir;
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.SDNODE_CACHE_DIR;
  else process.env.SDNODE_CACHE_DIR = savedCache;
  fs.rmSync(tmp, { recursive: true, force: true });
});

const cli = path.join(repoRoot, 'dist', 'cli', 'cli.js');
function sdnode(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, SDNODE_CACHE_DIR: cacheDir, ...env },
    timeout: 240000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A tiny SD1 checkpoint whose text encoder has CLIP's real vocabulary (49 408), so the standard merges fit it. */
let fullVocab: string | undefined;
function fullVocabModel(): string {
  if (!fullVocab) {
    const dir = path.join(tmp, 'full-vocab');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { makeTinyModel } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js')) as {
      makeTinyModel: (o: object) => { safetensors: string };
    };
    fullVocab = makeTinyModel({ outDir: dir, vocab: 49408, formats: ['safetensors'], name: 'tiny-full-vocab' }).safetensors;
  }
  return fullVocab;
}

describe('the shipped CLIP merges', () => {
  test('are in the package, compressed, and decompress to the standard table (SHA-256)', () => {
    const gz = fs.readFileSync(shippedMergesPath());
    const text = zlib.gunzipSync(gz).toString('utf8');
    expect(crypto.createHash('sha256').update(text).digest('hex')).toBe(CLIP_MERGES_SHA256);
    expect(text.split('\n')[0]).toMatch(/^#version/);
    // the README's notices record the compressed file's SHA-256, origin and licence
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    expect(readme).toContain(crypto.createHash('sha256').update(gz).digest('hex'));
    expect(readme).toMatch(/OpenAI CLIP[^\n]*MIT/);
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('data/');
  });
});

describeTiny('first run without a tokenizer step', () => {
  test('a plain .safetensors checkpoint generates with no tokenizer option and an empty cache', async () => {
    const file = fullVocabModel();
    const info = await inspect(file);
    expect(info.hasTokenizer).toBe(false);
    const model = await loadModel(file);
    try {
      const r = await model.generate({ prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, seed: 1 });
      expect(r.images[0].width).toBe(64);
    } finally {
      await model.dispose();
    }
    expect(fs.existsSync(path.join(cacheDir, 'clip-merges.txt'))).toBe(false); // nothing downloaded or written
  });

  test("the model's own merges take precedence over the shipped table (GGUF key, diffusers tokenizer/)", async () => {
    // The tiny models' vocabulary is 814 tokens: the shipped table would give ids outside it, so generating at all
    // shows that the model's own merges were used.
    const tiny = tinyModel();
    for (const src of [tiny.gguf, tiny.diffusers]) {
      const model = await loadModel(src);
      try {
        await expect(model.generate({ prompt: 'a red fox', width: 64, height: 64, steps: 1, seed: 1 })).resolves.toBeDefined();
      } finally {
        await model.dispose();
      }
    }
  });

  test('an explicit tokenizerPath takes precedence over everything', async () => {
    const tiny = tinyModel();
    // the full-vocabulary model with the tiny 814-token merges: works (ids stay small) only if the explicit file is used
    const model = await loadModel(fullVocabModel(), { tokenizerPath: tiny.merges });
    try {
      await expect(model.generate({ prompt: 'a red fox', width: 64, height: 64, steps: 1, seed: 1 })).resolves.toBeDefined();
    } finally {
      await model.dispose();
    }
    // and merges that do not fit the model say which option to use, at load (the vocabulary is checked against the
    // tokenizer with every other tensor shape)
    const err = await loadModel(tiny.safetensors).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdnodeError);
    expect(String((err as Error).message)).toMatch(/tokenizerPath.*--tokenizer/);
    expect(String((err as Error).message)).not.toMatch(/tokenizer_path|LoadOptions/);
  });

  test('convert embeds the merges it used, so the GGUF is self-contained', async () => {
    const out = path.join(tmp, 'converted.gguf');
    await convert(fullVocabModel(), out, { type: 'f16' });
    expect((await inspect(out)).hasTokenizer).toBe(true);
  });
});

describe('convert output names', () => {
  test('a name that is not .gguf is refused unless forced (API and CLI)', async () => {
    const err = await convert('in.safetensors', path.join(tmp, 'out.safetensors')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).option).toBe('output');
    expect((err as Error).message).toMatch(/\.gguf.*force/);
    const r = sdnode(['convert', 'in.safetensors', path.join(tmp, 'out.bin')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/ending in \.gguf.*--force/);
  });

  describeTiny('with a model', () => {
    test('--force writes GGUF under another name', () => {
      const out = path.join(tmp, 'forced.bin');
      const r = sdnode(['convert', tinyModel().safetensors, out, '--force', '-q']);
      expect(r.status).toBe(0);
      expect(fs.readFileSync(out).subarray(0, 4).toString('latin1')).toBe('GGUF');
    });
  });
});

describe('output path checked before any work', () => {
  const fake = { SDNODE_TEST_FAKE_MODEL: JSON.stringify({ loadMs: 3000, stepMs: 5 }) };
  test.each([
    ['a missing folder', () => path.join(tmp, 'no-such-dir', 'out.png'), /folder of --output .* does not exist/],
    ['an unknown extension', () => path.join(tmp, 'out.gif'), /expected a path ending in \.png, \.jpg, \.jpeg or \.webp for --output but received \".*out\.gif\" \(string\)$/m],
    [
      'a folder',
      () => {
        fs.mkdirSync(path.join(tmp, 'dir.png'), { recursive: true });
        return path.join(tmp, 'dir.png');
      },
      /--output ".*dir\.png" is a folder/,
    ],
    ['a parent that is a file', () => path.join(cli, 'x.png'), /is not a folder/],
  ])('%s: exit 2 at once, before the model loads', (_what, out, re) => {
    const t0 = Date.now();
    const r = sdnode(['generate', '-m', 'model.safetensors', '-p', 'x', '-o', out(), '--steps', '2'], fake);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toContain('load ');
    expect(Date.now() - t0).toBeLessThan(3000); // the fake load alone takes 3 s
  });

  test('image.save() rejects with typed errors, never a bare ENOENT', async () => {
    const img = new GeneratedImage({ width: 8, height: 8, channels: 3, data: Buffer.alloc(192), seed: 1 });
    const missing = await img.save(path.join(tmp, 'nope', 'a.png')).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(InvalidOptionError);
    expect((missing as InvalidOptionError).option).toBe('path');
    expect((missing as Error).message).toMatch(/does not exist.*create it first/);
    // a write that fails after the checks (/proc takes no new files, even for root): SdnodeError with code Io
    if (fs.existsSync('/proc/self')) {
      const io = await img.save('/proc/sdnode-test.png').catch((e: unknown) => e);
      expect(io).toBeInstanceOf(SdnodeError);
      expect(['Io', 'InvalidArgument']).toContain((io as SdnodeError).code);
    }
    await expect(img.save(path.join(tmp, 'ok.png'))).resolves.toBeUndefined();
  });
});

describeTiny('size rules of the loaded family', () => {
  test('sdnode info and ModelInfo.sizeMultiple give the rule (64 for SD 1.x)', async () => {
    const tiny = tinyModel();
    expect((await inspect(tiny.safetensors)).sizeMultiple).toBe(64);
    const r = sdnode(['info', tiny.safetensors]);
    expect(r.stdout).toMatch(/sizes\s+width and height: multiples of 64/);
  });

  test('--help and the first validation error state it', () => {
    expect(sdnode(['generate', '--help']).stdout).toMatch(/--width.*multiple of 64/);
    const r = sdnode(['generate', '-m', 'x.safetensors', '-p', 'x', '-o', path.join(tmp, 'a.png'), '--width', '100']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/multiple of 8 .*SD 1\.x models need multiples of 64/);
  });

  test('a size the model cannot take is refused from the header, before the weights load', () => {
    const r = sdnode(['generate', '-m', tinyModel().safetensors, '-p', 'x', '-o', path.join(tmp, 'a.png'), '--width', '72']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/multiple of 64 \(the rule of this sd1 model; e\.g\. 64 or 128\) for --width but received 72/);
    expect(r.stderr).not.toContain('load ');
  });

  test('Model.generate checks the loaded model rule before queueing', async () => {
    const model = await loadModel(tinyModel().gguf);
    try {
      const err = await model.generate({ prompt: 'x', width: 64, height: 72 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).option).toBe('height');
    } finally {
      await model.dispose();
    }
  });
});

describeTiny('model hash', () => {
  test('is computed once and remembered by path, size and mtime; infotext() includes it once known', async () => {
    const file = path.join(tmp, 'hash-model.gguf');
    fs.copyFileSync(tinyModel().gguf, file);
    const expected = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 10);
    const m1 = await loadModel(file);
    let r;
    try {
      expect(m1.knownHash).toBeUndefined(); // never computed here before: not read at load time
      r = await m1.generate({ prompt: 'x', width: 64, height: 64, steps: 1, seed: 3 });
      expect(r.images[0].infotext()).not.toContain('Model hash');
      expect(await m1.hash()).toBe(expected);
      expect(r.images[0].infotext()).toContain(`Model hash: ${expected}`);
    } finally {
      await m1.dispose();
    }
    const rec = JSON.parse(fs.readFileSync(path.join(cacheDir, 'model-hashes.json'), 'utf8')) as Record<string, { sha256: string }>;
    expect(rec[path.resolve(file)].sha256.slice(0, 10)).toBe(expected);
    // a later load knows it at once, without reading the file
    const m2 = await loadModel(file);
    try {
      expect(m2.knownHash).toBe(expected);
      const r2 = await m2.generate({ prompt: 'x', width: 64, height: 64, steps: 1, seed: 3 });
      expect(r2.images[0].infotext()).toContain(`Model hash: ${expected}`);
    } finally {
      await m2.dispose();
    }
    // a file changed since (mtime) is not trusted
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later);
    const m3 = await loadModel(file);
    try {
      expect(m3.knownHash).toBeUndefined();
    } finally {
      await m3.dispose();
    }
  });
});

describe('engine messages in JavaScript terms', () => {
  test("the engine's parameter names become the API's option names", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { fromNative } = require('../lib/errors') as typeof import('../lib/errors');
    const e = fromNative(Object.assign(new Error('clip_skip must be at most 2 for this model'), { code: 'InvalidArgument' }), 'generate');
    expect(e).toBeInstanceOf(InvalidOptionError);
    expect(e.message).toBe('clipSkip must be at most 2 for this model');
    expect((e as InvalidOptionError).option).toBe('clipSkip');
    const t = fromNative(Object.assign(new Error('tokenizer_path: /x/merges.txt.gz is gzip-compressed'), { code: 'InvalidFile' }), 'convert');
    expect(t.message).toBe('tokenizerPath: /x/merges.txt.gz is gzip-compressed');
  });
});

describe('--json errors', () => {
  test('go to stdout as JSON, with the exit code', () => {
    const r = sdnode(['generate', '-m', 'x.safetensors', '-p', 'x', '-o', path.join(tmp, 'a.png'), '--steps', '0', '--json']);
    expect(r.status).toBe(2);
    const j = JSON.parse(r.stdout) as { error: { name: string; code: string; message: string; option: string }; exitCode: number };
    expect(j).toMatchObject({ exitCode: 2, error: { name: 'InvalidOptionError', code: 'InvalidArgument', option: '--steps' } });
    expect(j.error.message).toMatch(/for --steps/);
    const missing = sdnode(['info', path.join(tmp, 'missing.safetensors'), '--json']);
    expect(missing.status).toBe(1);
    expect((JSON.parse(missing.stdout) as { error: { code: string } }).error.code).toBe('NotFound');
    const usage = sdnode(['info', '--json']);
    expect(usage.status).toBe(2);
    expect((JSON.parse(usage.stdout) as { error: { code: string } }).error.code).toBe('Usage');
  });
});

describe('progress bar', () => {
  test('stays within 40 columns and keeps the count', () => {
    for (const cols of [40, 30, 20, 80]) {
      const line = ProgressBar.layout('sample 2/4', 0.35, '7/20', 'ETA 1m02s', cols);
      expect(line.length).toBeLessThanOrEqual(cols - 1);
      expect(line).toContain('sample 2/4');
      if (cols >= 30) expect(line).toContain('7/20');
    }
    expect(ProgressBar.layout('sample 2/4', 0.5, '10/20', 'ETA 5.0s', 40)).toMatch(/^sample 2\/4 \[#+\.+\] 10\/20/);
  });

  test('a batch shows the image index', () => {
    const r = sdnode(['generate', '-m', 'm.safetensors', '-p', 'x', '-o', path.join(tmp, 'b.png'), '--batch', '2', '--steps', '3'], {
      SDNODE_TEST_FAKE_MODEL: JSON.stringify({ stepMs: 5 }),
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/sample 1\/2 /);
    expect(r.stderr).toMatch(/sample 2\/2 /);
  });
});
