// Regression tests for issue 13 (hostile-use probe): API misuse that used to wedge a model, resolve an aborted
// call, hang on special files or oversubscribe the CPU. Engine-side findings are tested in native/tests
// (test_hardening.cpp) and the CLI's in cli.test.ts / this file's CLI section.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AbortError, InvalidOptionError, inspect, loadModel, ModelLoadError, SdnodeError } from '../lib/index';
import { resolveLoadOptions } from '../lib/options';
import { downloadTokenizer } from '../lib/tokenizer';
import { loadFakeModel } from '../lib/testing';
import { cliPath, ensureDist } from './helpers/dist';
import { describeTiny, tinyModel } from './helpers/tiny';

const small = { prompt: 'a fox', width: 64, height: 64, seed: 7 } as const;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-harden-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // keep the JS thread busy, as a heavy onProgress handler would
  }
}

describe('finding 2: signal-like objects cannot wedge a model', () => {
  test('an object without removeEventListener is refused with InvalidOptionError', async () => {
    const m = await loadFakeModel({ stepMs: 1 });
    const fakeSignal = { aborted: false, addEventListener() {} };
    const err = await m.generate(small, { signal: fakeSignal as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).option).toBe('signal');
    expect(() => resolveLoadOptions({ signal: fakeSignal })).toThrow(InvalidOptionError);
    // the model is not wedged
    await expect(m.generate({ ...small, steps: 1 })).resolves.toBeDefined();
    expect(m.pending).toBe(0);
    await m.dispose();
  });

  test('a signal whose removeEventListener throws: the call settles and later calls still run', async () => {
    const m = await loadFakeModel({ stepMs: 1 });
    const odd = {
      aborted: false,
      addEventListener() {},
      removeEventListener() {
        throw new Error('nope');
      },
    };
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => {
      unhandled.push(e);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      await expect(m.generate({ ...small, steps: 2 }, { signal: odd as never })).resolves.toBeDefined();
      await expect(m.generate({ ...small, steps: 1 })).resolves.toBeDefined();
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toEqual([]);
      expect(m.pending).toBe(0);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await m.dispose();
    }
  }, 10000);
});

describe('finding 4: an aborted call never resolves', () => {
  test('abort from the decode progress callback, delivered after the engine finished (20 runs)', async () => {
    const m = await loadFakeModel({ stepMs: 1, decodeMs: 1 });
    let resolved = 0;
    for (let i = 0; i < 20; i++) {
      const ac = new AbortController();
      const r = await m
        .generate({ ...small, steps: 1 }, {
          signal: ac.signal,
          onProgress: (e) => {
            // the JS thread is busy at the last sampling step: the engine decodes and finishes meanwhile, so the
            // decode events (and the abort they trigger) arrive after the result is on its way
            if (e.phase === 'sample' && e.step === e.steps) busyWait(50);
            if (e.phase === 'decode') ac.abort();
          },
        })
        .then(
          () => 'resolved',
          (e: unknown) => e,
        );
      if (r === 'resolved') resolved++;
      else expect(r).toBeInstanceOf(AbortError);
    }
    expect(resolved).toBe(0);
    await m.dispose();
  });
});

describe('finding 11: a callback that throws undefined', () => {
  test('onPreview throwing undefined rejects with undefined, not AbortError', async () => {
    const m = await loadFakeModel({ stepMs: 1 });
    const r = await m
      .generate({ ...small, steps: 5 }, {
        onPreview: () => {
          throw undefined; // eslint-disable-line no-throw-literal
        },
      })
      .then(
        () => ({ ok: true, e: null as unknown }),
        (e: unknown) => ({ ok: false, e }),
      );
    expect(r.ok).toBe(false);
    expect(r.e).toBeUndefined();
    await expect(m.generate({ ...small, steps: 1 })).resolves.toBeDefined();
    await m.dispose();
  });

  test('onProgress throwing undefined during load rejects with undefined', async () => {
    const r = await loadFakeModel({ loadMs: 20 }, {
      onProgress: () => {
        throw undefined; // eslint-disable-line no-throw-literal
      },
    }).then(
      () => 'loaded',
      (e: unknown) => ({ e }),
    );
    expect(r).toEqual({ e: undefined });
    expect(r).not.toBe('loaded');
  });
});

describe('finding 5: threads are capped at the hardware concurrency', () => {
  test('threads above os.availableParallelism() are refused before native work', async () => {
    const max = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    expect(resolveLoadOptions({ threads: max }).threads).toBe(max);
    expect(() => resolveLoadOptions({ threads: max + 1 })).toThrow(InvalidOptionError);
    expect(() => resolveLoadOptions({ threads: 1024 })).toThrow(`an integer from 0 to ${max}`);
    await expect(loadModel('x.safetensors', { threads: 1024 })).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

const fifoSupported = process.platform !== 'win32' && spawnSync('mkfifo', ['--help']).status === 0;
const describeFifo = fifoSupported ? describe : describe.skip;
if (!fifoSupported) console.warn('hardening.test.ts: skipping the FIFO tests (no mkfifo on this system)');

describeFifo('finding 3: special files never hang', () => {
  let fifo: string;
  beforeAll(() => {
    fifo = path.join(tmp, 'model.safetensors');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
  });

  test('inspect() of a FIFO rejects at once with a typed error', async () => {
    const t0 = performance.now();
    const err = await inspect(fifo).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdnodeError);
    expect((err as SdnodeError).code).toBe('InvalidFile');
    expect((err as Error).message).toMatch(/named pipe/);
    expect(performance.now() - t0).toBeLessThan(2000);
  }, 10000);

  test('loadModel() of a FIFO rejects at once', async () => {
    const err = await loadModel(fifo).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdnodeError);
    expect((err as Error).message).toMatch(/named pipe/);
  }, 10000);

  test('downloadTokenizer / sdnode get-tokenizer --url: a FIFO or a device is refused at once, also at the cache path', async () => {
    const saved = process.env.SDNODE_CACHE_DIR;
    const cacheDir = fs.mkdtempSync(path.join(tmp, 'tok-cache-'));
    process.env.SDNODE_CACHE_DIR = cacheDir;
    try {
      for (const [p, what] of [
        [fifo, /named pipe/],
        ['/dev/zero', /character device/],
        [tmp, /folder/],
      ] as const) {
        const t0 = performance.now();
        const err = await downloadTokenizer({ url: p, force: true }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(SdnodeError);
        expect((err as SdnodeError).code).toBe('InvalidFile');
        expect((err as Error).message).toMatch(what);
        expect((err as Error).message).toMatch(/not a regular file/);
        expect(performance.now() - t0).toBeLessThan(2000);
      }
      // a FIFO where the cached copy lives is not waited on either
      const cachedFifo = path.join(cacheDir, 'clip-merges.txt');
      expect(spawnSync('mkfifo', [cachedFifo]).status).toBe(0);
      await expect(downloadTokenizer({ url: '/dev/null' })).rejects.toThrow(/character device/);
      // the CLI exits at once with the typed error (status 1), not hanging on the pipe
      const r = spawnSync(process.execPath, [path.join(__dirname, '..', 'dist', 'cli', 'cli.js'), 'get-tokenizer', '--url', fifo, '--force'], {
        encoding: 'utf8',
        timeout: 20000,
        env: { ...process.env, SDNODE_CACHE_DIR: cacheDir },
      });
      expect(r.signal).toBeNull();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/named pipe \(FIFO\), not a regular file \(url \/ --url/);
    } finally {
      if (saved === undefined) delete process.env.SDNODE_CACHE_DIR;
      else process.env.SDNODE_CACHE_DIR = saved;
    }
  }, 30000);

  test('tokenizerPath: a FIFO, a folder or a device says what it is', async () => {
    const model = path.join(tmp, 'missing-model.safetensors');
    for (const [p, what] of [
      [fifo, /named pipe/],
      [tmp, /folder/],
      ['/dev/null', /device/],
    ] as const) {
      const err = await loadModel(model, { tokenizerPath: p }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SdnodeError);
      expect((err as Error).message).toMatch(what);
      expect((err as Error).message).not.toMatch(/does not exist/);
    }
  }, 10000);
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile files through `sdnode info` (findings 7, 8, 10) and the API (finding 11)
// ---------------------------------------------------------------------------------------------------------------
const repoRoot = path.resolve(__dirname, '..');
const cli = cliPath;

function sdnode(args: string[]): { status: number | null; stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60000, maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
}

/** A safetensors file: header object (tensors and __metadata__) followed by zeroed data. */
function writeSafetensors(file: string, header: Record<string, unknown>, dataBytes: number): void {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
}

/** A tensor-less GGUF v3 file with string key-values. */
function writeGguf(file: string, kv: Array<[string, string]>): void {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(24);
  head.write('GGUF', 0, 'latin1');
  head.writeUInt32LE(3, 4);
  head.writeBigUInt64LE(0n, 8);
  head.writeBigUInt64LE(BigInt(kv.length), 16);
  parts.push(head);
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, 'utf8');
    const l = Buffer.alloc(8);
    l.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([l, b]);
  };
  for (const [k, v] of kv) {
    const t = Buffer.alloc(4);
    t.writeUInt32LE(8, 0); // STRING
    parts.push(str(k), t, str(v));
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

// no raw control character (other than newline/tab) and no C1 control in what reaches the terminal
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe('findings 7, 8, 10: sdnode info on hostile files', () => {
  beforeAll(() => ensureDist(), 120000);

  test('60,000 GGUF keys: bounded output, no RangeError', () => {
    const f = path.join(tmp, 'many-keys.gguf');
    writeGguf(f, Array.from({ length: 60000 }, (_, i) => [`k${i}`, `v${i}`] as [string, string]));
    for (const json of [false, true]) {
      const r = sdnode(['info', f, ...(json ? ['--json'] : [])]);
      expect(r.stderr).not.toMatch(/RangeError/);
      expect(r.status).toBe(0);
      expect(r.stdout.length).toBeLessThan(64 * 1024);
      expect(r.stdout).toMatch(/more/);
    }
  });

  test('2^20 GGUF keys are refused at once with a typed error', () => {
    const f = path.join(tmp, 'huge-keys.gguf');
    const head = Buffer.alloc(24);
    head.write('GGUF', 0, 'latin1');
    head.writeUInt32LE(3, 4);
    head.writeBigUInt64LE(0n, 8);
    head.writeBigUInt64LE(1n << 20n, 16);
    fs.writeFileSync(f, Buffer.concat([head, Buffer.alloc(25 << 20, 1)]));
    const r = sdnode(['info', f]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/key\/value count 1048576 exceeds the limit of 65536/);
    expect(r.ms).toBeLessThan(10000);
  });

  test('100,000 safetensors metadata keys and one 40 MB value: bounded output', () => {
    const f = path.join(tmp, 'big-meta.safetensors');
    const meta: Record<string, string> = { big: 'x'.repeat(40 << 20) };
    for (let i = 0; i < 100000; i++) meta[`m${i}`] = String(i);
    writeSafetensors(f, { __metadata__: meta, w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8);
    for (const json of [false, true]) {
      const r = sdnode(['info', f, ...(json ? ['--json'] : [])]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout.length).toBeLessThan(512 * 1024);
    }
  });

  test('terminal escapes in metadata, tensor names and error messages are escaped', () => {
    const f = path.join(tmp, 'escapes.safetensors');
    const evil = '\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e';
    writeSafetensors(f, { __metadata__: { [`key${evil}`]: `value${evil}` }, [`w${evil}`]: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8);
    for (const json of [false, true]) {
      const r = sdnode(['info', f, ...(json ? ['--json'] : [])]);
      expect(r.status).toBe(0);
      expect(r.stdout).not.toMatch(RAW_CONTROL);
      expect(r.stdout).not.toContain('\u202e');
      expect(r.stdout).toMatch(/key/);
    }
    // a bad tensor entry whose name carries escapes: the error message names it, escaped
    const g = path.join(tmp, 'escapes-bad.safetensors');
    writeSafetensors(g, { [`w${evil}`]: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8);
    const r = sdnode(['info', g]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/byte length/);
    expect(r.stderr).not.toMatch(RAW_CONTROL);
    expect(r.stderr).toContain('\\x1b');
  });
});

describe('finding 11: stricter readers', () => {
  test('a key repeated inside a safetensors tensor entry is refused', async () => {
    const f = path.join(tmp, 'dup-key.safetensors');
    const json = '{"w":{"dtype":"F32","shape":[2],"shape":[1],"data_offsets":[0,8]}}';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(f, Buffer.concat([len, Buffer.from(json), Buffer.alloc(8)]));
    const err = await inspect(f).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdnodeError);
    expect((err as Error).message).toMatch(/"shape" appears twice/);
  });

  test('a zero-element shape whose other dimensions overflow is refused', async () => {
    const f = path.join(tmp, 'zero-huge.safetensors');
    const big = 2 ** 62;
    const json = `{"w":{"dtype":"F32","shape":[0,${big},${big},${big}],"data_offsets":[0,0]}}`;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(f, Buffer.concat([len, Buffer.from(json)]));
    const err = await inspect(f).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SdnodeError);
    expect((err as Error).message).toMatch(/overflows/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Findings 1 and 9 on the tiny real model
// ---------------------------------------------------------------------------------------------------------------

/** Rewrites a safetensors header in place (same length, padded with spaces), e.g. to change a tensor's shape. */
function editSafetensorsHeader(src: string, dst: string, edit: (h: Record<string, { shape: number[]; dtype: string }>) => void): void {
  const buf = fs.readFileSync(src);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  const text = Buffer.from(JSON.stringify(header), 'utf8');
  if (text.length > n) throw new Error('edited header is longer than the original');
  const out = Buffer.from(buf);
  out.fill(0x20, 8, 8 + n);
  text.copy(out, 8);
  fs.writeFileSync(dst, out);
}

describeTiny('findings 1, 9: the tiny SD1 model', () => {
  test('a conv weight with swapped dimensions is a ModelLoadError naming the tensor, at load', async () => {
    const tiny = tinyModel();
    const bad = path.join(tmp, 'swapped.safetensors');
    const name = 'model.diffusion_model.input_blocks.4.0.in_layers.2.weight';
    editSafetensorsHeader(tiny.safetensors, bad, (h) => {
      const s = h[name].shape;
      expect(s[0]).not.toBe(s[1]); // a channel-changing block: swapping keeps the byte count, breaks the model
      [s[0], s[1]] = [s[1], s[0]];
    });
    const err = await loadModel(bad, { tokenizerPath: tiny.merges }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(name);
    expect((err as SdnodeError).code).toBe('InvalidFile');
  });

  test("'BREAK '.repeat(300) is refused at once; 31 BREAKs still work", async () => {
    const tiny = tinyModel();
    const m = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    try {
      const t0 = performance.now();
      const err = await m.generate({ prompt: 'BREAK '.repeat(300), width: 64, height: 64, steps: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toMatch(/32 chunks/);
      expect(performance.now() - t0).toBeLessThan(5000);
      await expect(m.generate({ prompt: 'a fox BREAK '.repeat(31) + 'snow', width: 64, height: 64, steps: 1, cfgScale: 1 })).resolves.toBeDefined();
    } finally {
      await m.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Issue 13 leftovers: SD 2.x / SDXL networks and the VAE encoder are shape-validated at load
// ---------------------------------------------------------------------------------------------------------------
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { makeTinyModel } = require(path.join(repoRoot, 'scripts', 'make-tiny-model.js'));

describe.each([
  // [family, tensor as the file names it, as messages name it (the LDM name), new shape of the same size]
  ['sd2', 'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight',
    'cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.in_proj.weight', [64, 48]],
  ['sdxl', 'model.diffusion_model.label_emb.0.0.weight', 'model.diffusion_model.label_emb.0.0.weight', [1568, 128]],
] as const)('tiny %s: shapes validated at load', (family, fileName, ldmName, newShape) => {
  let tiny: { safetensors: string; merges: string };
  beforeAll(() => {
    tiny = makeTinyModel({ outDir: path.join(tmp, `shapes-${family}`), dtype: 'f16', family, formats: ['safetensors'] });
  }, 120000);

  async function loadError(file: string): Promise<SdnodeError> {
    const err = await loadModel(file, { tokenizerPath: tiny.merges }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as SdnodeError).code).toBe('InvalidFile');
    expect((err as Error).message.startsWith(`${file}: `)).toBe(true);
    expect((err as Error).message).toMatch(/re-download or re-convert it/);
    return err as SdnodeError;
  }

  test('a mis-shaped tensor, a missing one (truncated header) and a cut file are ModelLoadErrors; a good model loads afterwards', async () => {
    const bad = path.join(tmp, `${family}-misshaped.safetensors`);
    editSafetensorsHeader(tiny.safetensors, bad, (h) => {
      expect(h[fileName].shape[0] * h[fileName].shape[1]).toBe(newShape[0] * newShape[1]);
      h[fileName].shape = [...newShape];
    });
    expect((await loadError(bad)).message).toContain(`${ldmName} has shape [${newShape.join(', ')}]`);

    const missing = path.join(tmp, `${family}-no-encoder-out.safetensors`);
    editSafetensorsHeader(tiny.safetensors, missing, (h) => {
      delete h['first_stage_model.encoder.conv_out.weight'];
    });
    expect((await loadError(missing)).message).toContain('VAE encoder tensor first_stage_model.encoder.conv_out.weight is missing');

    const cut = path.join(tmp, `${family}-cut.safetensors`);
    const bytes = fs.readFileSync(tiny.safetensors);
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 4096));
    const err = await loadModel(cut, { tokenizerPath: tiny.merges }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);

    const m = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 1 });
    try {
      expect(m.info.family).toBe(family);
      const r = await m.generate({ prompt: 'a fox', width: 64, height: 64, steps: 1, cfgScale: 1, seed: 1 });
      expect(r.images[0].data.length).toBe(64 * 64 * 3);
    } finally {
      await m.dispose();
    }
  }, 120000);
});
