// The Model API's behaviour — queueing, cancellation, progress, previews, disposal, event-loop responsiveness,
// memory — tested against the addon's fake engine (native/addon/fake_model.cpp: sleeps instead of computing, polls
// the abort flag every 2 ms like the real pipeline does every step). The same behaviours on a real tiny model are in
// pipeline.test.ts.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { AbortError, convert, DisposedError, GeneratedImage, InvalidOptionError, getSystemInfo, inspect, loadModel, ModelLoadError, SdnodeError } from '../lib/index';
import type { Model, ProgressEvent } from '../lib/index';
import { loadFakeModel } from '../lib/testing';
import { maxEventLoopLag } from './helpers/lag';

const small = { prompt: 'a fox', width: 64, height: 64, seed: 7 } as const;

function deferredAbort(): AbortController {
  return new AbortController();
}

describe('getSystemInfo', () => {
  test('reports engine version, SIMD level, threads and backends', () => {
    const s = getSystemInfo();
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(['avx512', 'avx2', 'neon', 'scalar']).toContain(s.simd);
    expect(s.threads).toBeGreaterThanOrEqual(1);
    expect(s.physicalCores).toBeGreaterThanOrEqual(1);
    expect(s.backends).toContain('cpu');
  });
});

describe('loading', () => {
  test('progress is monotonic and reaches 1', async () => {
    const seen: number[] = [];
    const m = await loadFakeModel({ loadMs: 50 }, { onProgress: (e) => seen.push(e.progress) });
    expect(seen.length).toBeGreaterThan(0);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
    expect(seen[seen.length - 1]).toBe(1);
    expect(m.info.family).toBe('sd1');
    await m.dispose();
  });

  test('abort during load rejects with AbortError', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await expect(loadFakeModel({ loadMs: 2000 }, { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
  });

  test('an already aborted signal rejects at once', async () => {
    await expect(loadFakeModel({}, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  });

  test('a missing file is a ModelLoadError with code NotFound', async () => {
    const err = await loadModel(path.join(__dirname, 'no-such-model.safetensors')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).code).toBe('NotFound');
    expect((err as Error).message).toContain('no-such-model.safetensors');
  });

  test('inspect and convert: typed errors and option checks', async () => {
    const missing = path.join(__dirname, 'no-such-model.safetensors');
    const e = await inspect(missing).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(SdnodeError);
    expect((e as SdnodeError).code).toBe('NotFound');
    await expect(convert(missing, 'out.gguf', { type: 'q3' as never })).rejects.toThrow(
      'expected one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K for type but received "q3" (string)',
    );
    await expect(convert('a.gguf', './a.gguf')).rejects.toThrow('expected a path different from input for output but received "./a.gguf" (string)');
    await expect(convert(missing, 'out.gguf', { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    const c = await convert(missing, path.join(__dirname, 'never-written.gguf')).catch((err: unknown) => err);
    expect((c as SdnodeError).code).toBe('NotFound');
  });

  test('invalid load options reject before native work', async () => {
    await expect(loadModel('x.safetensors', { weightType: 'q2' as never })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(loadModel(42 as never)).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('generation on the fake engine', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadFakeModel({ encodeMs: 5, stepMs: 10, decodeMs: 20, scratchBytes: 1 << 20 });
  });
  afterAll(() => model.dispose());

  test('result: images with data, seeds, parameters', async () => {
    const r = await model.generate({ ...small, batchCount: 2, steps: 3 });
    expect(r.images).toHaveLength(2);
    expect(r.images[0]).toBeInstanceOf(GeneratedImage);
    expect(r.images.map((i) => i.seed)).toEqual([7, 8]);
    for (const img of r.images) {
      expect([img.width, img.height, img.channels]).toEqual([64, 64, 3]);
      expect(img.data.length).toBe(64 * 64 * 3);
      expect(img.parameters?.seed).toBe(img.seed);
    }
    expect(r.parameters).toMatchObject({ ...small, steps: 3, batchCount: 2, sampler: 'euler_a', cfgScale: 7 });
    expect(r.elapsedMs).toBeGreaterThan(0);
  });

  test('invalid options reject before anything is queued', async () => {
    const p = model.generate({ ...small, width: 65 });
    expect(model.pending).toBe(0);
    await expect(p).rejects.toThrow(/expected an integer multiple of 8 from 64 to 2048 \(SD 1\.x models need multiples of 64; .*\) for width but received 65 \(number\)/);
    await expect(model.generate(small, { previewEvery: 0 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(model.generate(small, { signal: 'x' as never })).rejects.toBeInstanceOf(InvalidOptionError);
  });

  test('the event loop stays responsive during a generation (setInterval lag < 50 ms)', async () => {
    const maxLag = await maxEventLoopLag(() => model.generate({ ...small, steps: 60 }, { onProgress: () => {} }));
    expect(maxLag).toBeLessThan(50);
  });

  test('progress is monotonic and complete', async () => {
    const ev: ProgressEvent[] = [];
    await model.generate({ ...small, steps: 5, batchCount: 2 }, { onProgress: (e) => ev.push(e) });
    const seq = ev.map((e) => `${e.phase}${e.image}:${e.step}/${e.steps}`);
    expect(seq).toEqual([
      'encode0:0/1',
      'encode0:1/1',
      ...[0, 1].flatMap((i) => [0, 1, 2, 3, 4, 5].map((s) => `sample${i}:${s}/5`)),
      'decode0:0/2',
      'decode0:1/2',
      'decode1:1/2',
      'decode1:2/2',
    ]);
    for (let i = 1; i < ev.length; i++) expect(ev[i].elapsedMs).toBeGreaterThanOrEqual(ev[i - 1].elapsedMs);
    expect(ev.every((e) => e.images === 2)).toBe(true);
    const last = ev[ev.length - 1];
    expect(last.etaMs).toBe(0);
    expect(ev.find((e) => e.phase === 'sample' && e.step === 1)?.etaMs).toBeGreaterThan(0);
  });

  test('previews: latent-sized images every N steps and at the last step', async () => {
    const previews: Array<{ step: number; image: GeneratedImage }> = [];
    await model.generate({ ...small, width: 96, steps: 10 }, { onPreview: (e) => previews.push(e), previewEvery: 3 });
    expect(previews.length).toBeGreaterThan(0);
    for (const p of previews) {
      expect([3, 6, 9, 10]).toContain(p.step);
      expect(p.image).toBeInstanceOf(GeneratedImage);
      expect([p.image.width, p.image.height, p.image.channels]).toEqual([12, 8, 3]);
      expect(p.image.data.length).toBe(12 * 8 * 3);
      expect(p.image.parameters).toBeUndefined();
    }
    expect((await previews[0].image.toPNG()).length).toBeGreaterThan(0);
  });

  test('abort before start: rejects with AbortError, nothing runs', async () => {
    const onProgress = jest.fn();
    await expect(model.generate(small, { signal: AbortSignal.abort(), onProgress })).rejects.toBeInstanceOf(AbortError);
    expect(model.pending).toBe(0);
    expect(onProgress).not.toHaveBeenCalled();
  });

  test('abort mid-sampling', async () => {
    const ac = deferredAbort();
    const steps: number[] = [];
    const t0 = performance.now();
    const err = await model
      .generate({ ...small, steps: 200 }, {
        signal: ac.signal,
        onProgress: (e) => {
          if (e.phase === 'sample') steps.push(e.step);
          if (e.phase === 'sample' && e.step === 3) ac.abort(new Error('enough'));
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    expect((err as AbortError).name).toBe('AbortError');
    expect((err as AbortError).cause).toEqual(new Error('enough'));
    expect(Math.max(...steps)).toBeLessThan(200);
    expect(performance.now() - t0).toBeLessThan(200 * 10);
  });

  test('abort mid-decode', async () => {
    const m = await loadFakeModel({ stepMs: 1, decodeMs: 3000 });
    const ac = new AbortController();
    const t0 = performance.now();
    const p = m.generate({ ...small, steps: 2 }, {
      signal: ac.signal,
      onProgress: (e) => {
        if (e.phase === 'decode') ac.abort();
      },
    });
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(performance.now() - t0).toBeLessThan(2500);
    await m.dispose();
  });

  test('abort while queued rejects promptly; the running call is unaffected', async () => {
    const first = model.generate({ ...small, steps: 30 });
    const ac = new AbortController();
    const second = model.generate(small, { signal: ac.signal });
    expect(model.pending).toBe(2);
    ac.abort();
    await expect(second).rejects.toBeInstanceOf(AbortError);
    expect(model.pending).toBe(1); // first still running
    await expect(first).resolves.toMatchObject({ images: [expect.any(GeneratedImage)] });
  });

  test('many queued calls, some aborted: every promise settles, the rest run in order', async () => {
    const order: number[] = [];
    const calls = Array.from({ length: 12 }, (_, i) => {
      const ac = new AbortController();
      const p = model.generate({ ...small, steps: 2, seed: i }, { signal: ac.signal }).then((r) => {
        order.push(i);
        return r;
      });
      if (i % 3 === 1) ac.abort(); // aborted while queued
      if (i % 3 === 2) setTimeout(() => ac.abort(), 5 + i * 8); // aborted queued or while running
      return p;
    });
    const settled = await Promise.allSettled(calls);
    settled.forEach((s, i) => {
      if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(AbortError);
      else expect(s.value.images[0].seed).toBe(i);
      if (i % 3 === 0) expect(s.status).toBe('fulfilled');
      if (i % 3 === 1) expect(s.status).toBe('rejected');
    });
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(model.pending).toBe(0);
  });

  test('a throwing callback aborts the call and rejects with its error; the model stays usable', async () => {
    const boom = new Error('boom');
    await expect(
      model.generate({ ...small, steps: 50 }, {
        onProgress: (e) => {
          if (e.phase === 'sample' && e.step === 2) throw boom;
        },
      }),
    ).rejects.toBe(boom);
    await expect(model.generate({ ...small, steps: 1 })).resolves.toBeDefined();
  });
});

describe('memory', () => {
  test('RSS returns to baseline over 20 cycles of completed and aborted runs', async () => {
    const scratch = 64 << 20; // the fake engine allocates and touches this much per run, like the real one's buffers
    const m = await loadFakeModel({ stepMs: 2, decodeMs: 2, scratchBytes: scratch });
    const cycle = async (): Promise<void> => {
      await m.generate({ ...small, steps: 3, batchCount: 2 });
      const ac = new AbortController();
      const p = m.generate({ ...small, steps: 100 }, { signal: ac.signal, onProgress: (e) => e.step === 2 && ac.abort() });
      const queued = m.generate({ ...small, steps: 3 }, { signal: ac.signal });
      await Promise.allSettled([p, queued]);
    };
    await cycle();
    await cycle();
    const baseline = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) await cycle();
    const after = process.memoryUsage().rss;
    // One run's scratch is 64 MiB: a leak of it per cycle would add > 1 GiB over 20 cycles.
    expect(after - baseline).toBeLessThan(48 << 20);
    await m.dispose();
  });
});

describe('dispose', () => {
  test('the running call finishes, queued calls and later calls reject with DisposedError', async () => {
    const m = await loadFakeModel({ stepMs: 5 });
    const running = m.generate({ ...small, steps: 20 });
    const queued = m.generate(small);
    const d1 = m.dispose();
    const d2 = m.dispose();
    expect(d2).toBe(d1);
    expect(m.disposed).toBe(true);
    await expect(queued).rejects.toBeInstanceOf(DisposedError);
    await expect(running).resolves.toMatchObject({ images: [expect.any(GeneratedImage)] });
    await d1;
    const later = await m.generate(small).catch((e: unknown) => e);
    expect(later).toBeInstanceOf(DisposedError);
    expect((later as DisposedError).code).toBe('Disposed');
  });

  test('Symbol.asyncDispose and `await using`', async () => {
    let outer: Model | undefined;
    {
      await using m = await loadFakeModel({ stepMs: 1 });
      outer = m;
      await m.generate({ ...small, steps: 1 });
    }
    expect(outer.disposed).toBe(true);
    const m2 = await loadFakeModel();
    await m2[Symbol.asyncDispose]();
    expect(m2.disposed).toBe(true);
  });

  test('two models run at the same time', async () => {
    const [a, b] = await Promise.all([loadFakeModel({ stepMs: 5 }), loadFakeModel({ stepMs: 5 })]);
    const [ra, rb] = await Promise.all([a.generate({ ...small, steps: 10, seed: 1 }), b.generate({ ...small, steps: 10, seed: 2 })]);
    expect(ra.images[0].seed).toBe(1);
    expect(rb.images[0].seed).toBe(2);
    await Promise.all([a.dispose(), b.dispose()]);
  });
});

describe('process and thread teardown (native clean-up hooks)', () => {
  const addon = path.resolve(__dirname, '..', 'build', 'Release', 'sdnode.node');
  const run = (script: string): { stdout: string; stderr: string; status: number | null; signal: NodeJS.Signals | null } =>
    spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000, env: { ...process.env, ADDON: addon } });

  test('the process exits normally with an idle, undisposed model', () => {
    const r = run(`
      const b = require(process.env.ADDON);
      const m = new b.Model();
      m.loadFake({}, null, null).then(() => m.generate({ prompt: 'x', width: 64, height: 64, steps: 2, seed: 1 }, null, null, null))
        .then((imgs) => console.log('done', imgs.length));`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('done 1');
    expect(r.status).toBe(0);
  });

  test('undisposed models are freed by garbage collection, threads included', () => {
    if (process.platform !== 'linux') return; // counts threads in /proc
    const r = spawnSync(
      process.execPath,
      [
        '--expose-gc',
        '-e',
        `
        const fs = require('fs');
        const b = require(process.env.ADDON);
        const threads = () => fs.readdirSync('/proc/self/task').length;
        (async () => {
          const before = threads();
          for (let i = 0; i < 20; i++) {
            const m = new b.Model();
            await m.loadFake({}, null, null);
            await m.generate({ prompt: 'x', width: 64, height: 64, steps: 1, seed: i }, null, null, null);
          }
          const peak = threads();
          for (let i = 0; i < 5; i++) { global.gc(); await new Promise((r) => setTimeout(r, 20)); }
          console.log(JSON.stringify({ before, peak, after: threads() }));
        })();`,
      ],
      { encoding: 'utf8', timeout: 60000, env: { ...process.env, ADDON: addon } },
    );
    expect(r.stderr).toBe('');
    const t = JSON.parse(r.stdout) as { before: number; peak: number; after: number };
    expect(t.peak).toBeGreaterThan(t.before); // one worker thread per live model
    expect(t.after).toBeLessThanOrEqual(t.before + 1);
  });

  test('process.exit() during a generation does not crash', () => {
    const r = run(`
      const b = require(process.env.ADDON);
      const m = new b.Model();
      m.loadFake({ stepMs: 50 }, null, null).then(() => {
        m.generate({ prompt: 'x', width: 64, height: 64, steps: 1000, seed: 1 }, () => {}, null, null).catch(() => {});
        setTimeout(() => process.exit(3), 100);
      });`);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(3);
  });

  test('terminating a worker thread during a generation does not crash', () => {
    const r = run(`
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const b = require(process.env.ADDON);
        const m = new b.Model();
        m.loadFake({ stepMs: 50 }, null, null).then(() => {
          m.generate({ prompt: 'x', width: 64, height: 64, steps: 1000, seed: 1 }, () => {}, null, null).catch(() => {});
          require('worker_threads').parentPort.postMessage('running');
        });\`, { eval: true });
      w.on('message', () => setTimeout(() => w.terminate().then(() => console.log('terminated')), 100));`);
    expect(r.signal).toBeNull();
    expect(r.stdout.trim()).toBe('terminated');
    expect(r.status).toBe(0);
  });
});

describe('controlNet image on the queue (fake engine)', () => {
  test('the control image is decoded while queued; a bad image rejects that call only, in order', async () => {
    const m = await loadFakeModel({ stepMs: 2 });
    try {
      const png = await new GeneratedImage({ width: 32, height: 16, channels: 3, data: Buffer.alloc(32 * 16 * 3, 200), seed: 0 }).toPNG();
      const order: string[] = [];
      const a = m.generate({ ...small, steps: 2, controlNet: { model: 'cn.safetensors', image: png } }).then(() => order.push('a'));
      const b = m.generate({ ...small, steps: 2, controlNet: { model: 'cn.safetensors', image: Buffer.from('not an image') } });
      const c = m.generate({ ...small, steps: 2 }).then(() => order.push('c'));
      await a;
      await expect(b).rejects.toBeInstanceOf(InvalidOptionError);
      await expect(b).rejects.toThrow(/controlNet\.image: .*not an image/);
      await c;
      expect(order).toEqual(['a', 'c']);
    } finally {
      await m.dispose();
    }
  });
});
