// Queue mode: `sdnode serve --queue redis://...` with `sdnode worker` processes, on a real redis-server started by
// this file (127.0.0.1, free port). A worker killed mid-job (SIGKILL) hands its job to the other; cancel reaches the
// worker; jobs survive a server restart; a bounded load test checks that every job settles exactly once and reports
// throughput and the overhead over calling the library API directly.
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { loadModel } from '../lib/model';
import { createServer, type SdnodeServer } from '../lib/server/app';
import { redisSkipReason, startRedis, type RedisServer } from './helpers/redis';
import { repoRoot, tinyModel, tinySkipReason, type TinyModel } from './helpers/tiny';
import { cliPath, ensureDist } from './helpers/dist';
import { readEvents } from './helpers/sse';
import { writeTinyControlNet } from './helpers/controlnet';

jest.setTimeout(300_000);

const cli = cliPath;
const skip = redisSkipReason() ?? tinySkipReason();
if (skip) console.warn(`server-queue.test.ts: ${skip}`);
const describeRedis = skip ? describe.skip : describe;

interface Worker {
  proc: ChildProcess;
  id: string;
  log: () => string;
  stop(): Promise<void>;
}

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== null && (v as unknown) !== false) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describeRedis(`sdnode serve --queue with sdnode worker processes${skip ? ` (${skip})` : ''}`, () => {
  let redis: RedisServer;
  let tiny: TinyModel;
  let server: SdnodeServer | undefined;
  const workers: Worker[] = [];

  function startWorker(fake: boolean, maxStalled = 2, grace = 5, extra: string[] = []): Promise<Worker> {
    const env = { ...process.env };
    if (fake) env.SDNODE_TEST_FAKE_MODEL = JSON.stringify({ stepMs: 100, decodeMs: 5 });
    else delete env.SDNODE_TEST_FAKE_MODEL;
    const proc = spawn(
      process.execPath,
      [cli, 'worker', '--queue', redis.url, '--model', tiny.safetensors, '--tokenizer', tiny.merges, '--threads', '1', '--stall-timeout', '1', '--max-stalled', String(maxStalled), '--shutdown-grace', String(grace), ...extra],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    const w: Worker = {
      proc,
      id: '',
      log: () => out,
      stop: () =>
        new Promise<void>((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          proc.once('exit', () => resolve());
          proc.kill('SIGTERM');
        }),
    };
    workers.push(w);
    return waitFor('the worker to start', () => {
      if (proc.exitCode !== null) throw new Error(`worker exited: ${out}`);
      const m = /^sdnode worker: (\S+)$/m.exec(out);
      if (m) w.id = m[1];
      return m ? w : undefined;
    });
  }

  beforeAll(async () => {
    ensureDist();
    tiny = tinyModel();
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await server?.close(0);
    server = undefined;
  });
  afterAll(async () => {
    await redis?.stop();
  });

  test('a worker killed mid-job: the job completes on the other worker', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    const [a, b] = await Promise.all([startWorker(true), startWorker(true)]);
    const job = await post(`${server.url}/v1/jobs`, { prompt: 'crash', width: 64, height: 64, steps: 30 });
    expect(job.status).toBe(202);
    const workersSeen: string[] = [];
    const stream = readEvents(`${server.url}/v1/jobs/${job.json.id}/events`, {}, (type, data) => {
      if (type === 'status' && data.worker && !workersSeen.includes(data.worker)) workersSeen.push(data.worker);
    });
    const first = await waitFor('the job to start on a worker', () => {
      const j = server!.store.get(job.json.id);
      return j?.progress?.phase === 'sample' && j.progress.step >= 3 ? j.worker : undefined;
    });
    const victim = first === a.id ? a : b;
    const survivor = victim === a ? b : a;
    victim.proc.kill('SIGKILL');
    const events = await stream;
    const last = events[events.length - 1];
    expect(last.type).toBe('result');
    expect(last.data.status).toBe('succeeded');
    expect(last.data.worker).toBe(survivor.id);
    expect(last.data.attempts).toBe(2);
    expect(workersSeen).toEqual([victim.id, survivor.id]);
    expect(survivor.log()).toContain(`job ${job.json.id}: done`);
  });

  test('a job whose worker dies more often than --max-stalled allows fails with the reason', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    const a = await startWorker(true, 0);
    const job = await post(`${server.url}/v1/jobs`, { prompt: 'doomed', width: 64, height: 64, steps: 100 });
    await waitFor('sampling', () => server!.store.get(job.json.id)?.progress?.phase === 'sample');
    a.proc.kill('SIGKILL');
    await startWorker(true, 0); // its stalled-job check finds the orphan
    await server.store.get(job.json.id)!.done;
    const g = (await fetch(`${server.url}/v1/jobs/${job.json.id}`).then((r) => r.json())) as any;
    expect(g.status).toBe('failed');
    expect(g.error.code).toBe('Stalled');
    expect(g.error.message).toMatch(/stopped answering .* --max-stalled/);
  });

  test('a worker stopped with SIGTERM hands its running job back to the queue; another worker finishes it', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    const a = await startWorker(true, 2, 0);
    const job = await post(`${server.url}/v1/jobs`, { prompt: 'handed back', width: 64, height: 64, steps: 30 });
    await waitFor('sampling', () => server!.store.get(job.json.id)?.progress?.phase === 'sample');
    await a.stop(); // SIGTERM, grace 0
    expect(a.log()).toContain(`1 handed back to the queue (${job.json.id})`);
    const b = await startWorker(true);
    await server.store.get(job.json.id)!.done;
    const rec = server.store.get(job.json.id)!;
    expect(rec.status).toBe('succeeded');
    expect(rec.worker).toBe(b.id);
  });

  test('DELETE reaches the worker running the job; the worker goes on with the next one', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    const w = await startWorker(true);
    const job = await post(`${server.url}/v1/jobs`, { prompt: 'long', width: 64, height: 64, steps: 150 });
    await waitFor('sampling', () => server!.store.get(job.json.id)?.progress?.phase === 'sample');
    const t0 = performance.now();
    const del = await fetch(`${server.url}/v1/jobs/${job.json.id}`, { method: 'DELETE' });
    expect(((await del.json()) as any).status).toBe('cancelled');
    expect(performance.now() - t0).toBeLessThan(2000); // a step is 100 ms
    await waitFor('the worker log', () => w.log().includes(`job ${job.json.id}: cancelled`));
    // a queued job is removed from the queue without reaching a worker
    const next = await post(`${server.url}/v1/jobs`, { prompt: 'next', width: 64, height: 64, steps: 2 });
    const events = await readEvents(`${server.url}/v1/jobs/${next.json.id}/events`);
    expect(events[events.length - 1].data.status).toBe('succeeded');
  });

  test('queued jobs survive a server restart and are served by the new server process', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await post(`${server.url}/v1/jobs`, { prompt: `restart ${i}`, width: 64, height: 64, steps: 2, seed: i })).json.id);
    const summary = await server.close(0);
    expect(summary.leftQueued.sort()).toEqual([...ids].sort());
    server = await createServer({ queue: redis.url, port: 0 });
    const before = (await fetch(`${server.url}/v1/jobs/${ids[0]}`).then((r) => r.json())) as any;
    expect(before.status).toBe('queued');
    // an embedding folder on the worker: the server lists it from the worker's heartbeat
    const embDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-queue-emb-'));
    const h = Buffer.from(JSON.stringify({ emb_params: { dtype: 'F32', shape: [2, 32], data_offsets: [0, 256] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(path.join(embDir, 'qemb.safetensors'), Buffer.concat([len, h, Buffer.alloc(256)]));
    const cnDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-queue-cn-'));
    writeTinyControlNet(path.join(cnDir, 'cn-tiny.safetensors'));
    await startWorker(false, 2, 5, ['--embd-dir', embDir, '--control-net-dir', cnDir]);
    expect((await fetch(`${server.url}/controlnet/model_list`).then((r) => r.json())) as any).toEqual({ model_list: ['cn-tiny'] });
    const embs = (await fetch(`${server.url}/sdapi/v1/embeddings`).then((r) => r.json())) as any;
    expect(embs).toEqual({ loaded: { qemb: { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: 32, vectors: 2 } }, skipped: {} });
    for (const [i, id] of ids.entries()) {
      const events = await readEvents(`${server.url}/v1/jobs/${id}/events`);
      const last = events[events.length - 1];
      expect(last.type).toBe('result');
      expect(last.data.parameters).toMatchObject({ prompt: `restart ${i}`, seed: i, model: 'tiny-sd1' });
      const img = await fetch(`${server.url}${last.data.images[0].url}`);
      expect(img.headers.get('content-type')).toBe('image/png');
    }
    const a1111 = await post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'sync', width: 64, height: 64, steps: 2, seed: 3 });
    expect(JSON.parse(a1111.json.info).all_seeds).toEqual([3]);
    // img2img through the queue: the init image travels as base64 in the job data
    const init = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
    const i2i = await post(`${server.url}/sdapi/v1/img2img`, { prompt: 'sync', width: 64, height: 64, steps: 2, seed: 3, init_images: [init.toString('base64')], denoising_strength: 0.6 });
    expect(i2i.status).toBe(200);
    expect(JSON.parse(i2i.json.info).denoising_strength).toBe(0.6);
    expect(i2i.json.images[0]).not.toBe(a1111.json.images[0]);
    // a ControlNet job through the queue: the worker resolves the name in its own folder
    const cn = await post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'sync', width: 64, height: 64, steps: 2, seed: 3, alwayson_scripts: { controlnet: { args: [{ model: 'cn-tiny', image: init.toString('base64'), weight: 0.7 }] } } });
    expect(cn.status).toBe(200);
    expect(cn.json.images[0]).not.toBe(a1111.json.images[0]);
    expect(JSON.stringify(cn.json)).not.toContain(cnDir);
    const models = (await fetch(`${server.url}/sdapi/v1/sd-models`).then((r) => r.json())) as any;
    expect(models.map((m: { model_name: string }) => m.model_name)).toEqual(['tiny-sd1']);
    expect((await post(`${server.url}/v1/jobs`, { prompt: 'x', model: 'other' })).status).toBe(404);
    fs.rmSync(embDir, { recursive: true, force: true });
    fs.rmSync(cnDir, { recursive: true, force: true });
  });

  test('load: jobs from 4 concurrent clients each settle exactly once (throughput and overhead reported)', async () => {
    const count = Number(process.env.SDNODE_LOAD_JOBS ?? 200);
    const clients = 4;
    const body = { prompt: 'load', width: 64, height: 64, steps: 1, cfgScale: 1 };
    // Baseline: the library API called directly, one call after another (one model = one engine thread).
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, threads: 1 });
    const directOverhead: number[] = [];
    const d0 = performance.now();
    const directN = Math.min(count, 50);
    for (let i = 0; i < directN; i++) {
      const t = performance.now();
      const r = await model.generate({ ...body, seed: i });
      await r.images[0].toPNG();
      directOverhead.push(performance.now() - t - r.elapsedMs);
    }
    const directRate = directN / ((performance.now() - d0) / 1000);
    await model.dispose();

    server = await createServer({ queue: redis.url, port: 0, limits: { maxQueue: 1000 } });
    await Promise.all([startWorker(false), startWorker(false)]);
    const settled = new Map<string, number>();
    server.store.onSettled = (j) => settled.set(j.id, (settled.get(j.id) ?? 0) + 1);
    const finals = new Map<string, number>();
    const overhead: number[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < count) {
          const i = next++;
          const t = performance.now();
          const r = await post(`${server!.url}/v1/jobs`, { ...body, seed: i });
          expect(r.status).toBe(202);
          const events = await readEvents(`${server!.url}/v1/jobs/${r.json.id}/events`);
          const ends = events.filter((e) => e.type === 'result' || e.type === 'error');
          for (const e of ends) finals.set(r.json.id, (finals.get(r.json.id) ?? 0) + 1);
          expect(ends).toHaveLength(1);
          expect(ends[0].data.status).toBe('succeeded');
          const job = server!.store.get(r.json.id)!;
          // time not spent in the engine nor waiting for a free worker: HTTP, Redis, events, PNG encoding
          overhead.push(performance.now() - t - job.result!.elapsedMs - (job.startedAt! - job.createdAt));
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    expect(finals.size).toBe(count);
    expect([...finals.values()].every((n) => n === 1)).toBe(true);
    expect(settled.size).toBe(count);
    expect([...settled.values()].every((n) => n === 1)).toBe(true);
    const pct = (a: number[], p: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((a.length * p) / 100))];
    console.log(
      `load test (${count} jobs 64x64 1 step, ${clients} clients, 2 workers, shared 2-core machine): ${(count / secs).toFixed(1)} jobs/s through the server; ` +
        `direct library calls ${directRate.toFixed(1)} calls/s (one model, sequential). Overhead per job beyond engine time and queue wait: ` +
        `p50 ${pct(overhead, 50).toFixed(1)} ms, p95 ${pct(overhead, 95).toFixed(1)} ms; direct call (incl. PNG encode): p50 ${pct(directOverhead, 50).toFixed(1)} ms, p95 ${pct(directOverhead, 95).toFixed(1)} ms`,
    );
  });

  test('Redis gone: new jobs get a 503 naming the queue, at once (runs last: it stops Redis)', async () => {
    server = await createServer({ queue: redis.url, port: 0 });
    await redis.stop();
    const t0 = performance.now();
    const r = await post(`${server.url}/v1/jobs`, { prompt: 'x', width: 64, height: 64, steps: 1 });
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('queue_unavailable');
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
