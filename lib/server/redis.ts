/**
 * Scale-out over Redis with BullMQ. The server puts jobs on the `sdnode-jobs` queue; workers (`sdnode worker`)
 * take them one at a time. What travels where:
 * - job data (the validated request) and state: BullMQ (a job survives a server restart and a worker crash: its
 *   lock expires, another worker's stalled check puts it back in the queue, at most `maxStalledCount` times);
 * - progress: `job.updateProgress` -> QueueEvents `progress` on the server;
 * - previews: Redis pub/sub channel `<prefix>:sdnode:preview` (small images, not worth a stream entry);
 * - cancel: the server removes a waiting job, or publishes on `<prefix>:sdnode:cancel` and sets a cancel key
 *   that the worker running (or about to run) the job sees;
 * - result images: Redis keys `<prefix>:sdnode:img:<job>:<i>` with the result lifetime (the job's return value
 *   keeps only seeds, infotexts and parameters, so the event stream stays small);
 * - the models each worker serves: hash `<prefix>:sdnode:workers`, refreshed every few seconds.
 * @internal
 * @packageDocumentation
 */
import * as os from 'os';
import { randomUUID } from 'crypto';
import type { Job, Queue, QueueEvents, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { InvalidOptionError, SdnodeError } from '../errors';
import { executeJob } from './execute';
import { isFinal, type JobImage, type JobProgress, type JobRecord, type JobResult, type JobStatus, type JobStore } from './jobs';
import { errorInfo, type Backend, type ShutdownSummary } from './local';
import { HttpError } from './limits';
import { controlNetNames, embeddingEntries, loraNames, type EmbeddingEntry, type ModelEntry, type ModelPool } from './models';
import type { JobRequest } from './params';

export const QUEUE_NAME = 'sdnode-jobs';
const PREFIX = 'bull';
const WORKER_TTL_MS = 15_000;
/** failedReason prefix of a job cancelled by a client or the server. */
const CANCELLED = 'cancelled: ';

const k = {
  preview: `${PREFIX}:sdnode:preview`,
  cancel: `${PREFIX}:sdnode:cancel`,
  cancelKey: (id: string) => `${PREFIX}:sdnode:cancelled:${id}`,
  img: (id: string, i: number) => `${PREFIX}:sdnode:img:${id}:${i}`,
  workers: `${PREFIX}:sdnode:workers`,
};

/** Data of a queued job. */
interface QueuedJob {
  request: JobRequest;
  /** Model name ('' = the worker's default). */
  model: string;
  createdAt: number;
}

/** Return value of a finished job (images live in their own keys). */
interface StoredResult {
  images: Array<{ seed: number; infotext: string }>;
  parameters: JobResult['parameters'];
  elapsedMs: number;
  worker: string;
}

type ProgressData = JobProgress & { worker: string; model?: string };

/**
 * Opens a connection. `failFast` (the server's producer connection): commands fail at once while Redis is down, so
 * HTTP requests get a 503 instead of waiting; workers and event readers wait and reconnect.
 */
async function connect(url: string, name: string, failFast = false): Promise<Redis> {
  if (!/^rediss?:\/\/[^\s]+$/.test(url)) {
    throw new InvalidOptionError(`expected a redis://HOST[:PORT][/DB] or rediss:// URL for --queue but received ${JSON.stringify(url)}`, 'queue');
  }
  const { default: IORedis } = await import('ioredis');
  const r = new IORedis(url, failFast ? { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectionName: name, lazyConnect: true } : { maxRetriesPerRequest: null, connectionName: name, lazyConnect: true });
  let lastError: unknown;
  r.on('error', (err: unknown) => (lastError = err)); // reconnects on its own; failures surface through the commands
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    const why = errorInfo(lastError ?? err).message;
    throw new SdnodeError(`cannot connect to Redis at ${url} (--queue): ${why}; is redis-server running there?`, 'Io', { cause: lastError ?? err });
  }
  return r;
}

/** The server side of queue mode. */
export class RedisBackend implements Backend {
  readonly mode = 'redis' as const;
  #store: JobStore;
  #queue!: Queue<QueuedJob, StoredResult>;
  #events!: QueueEvents;
  #conn!: Redis;
  #sub!: Redis;
  #eventsConn!: Redis;
  #ttlMs: number;
  #attempts: number;

  private constructor(store: JobStore, ttlMs: number, attempts: number) {
    this.#store = store;
    this.#ttlMs = ttlMs;
    this.#attempts = attempts;
  }

  static async open(url: string, store: JobStore, opts: { resultTtlMs: number; attempts: number }): Promise<RedisBackend> {
    const { Queue, QueueEvents } = await import('bullmq');
    const b = new RedisBackend(store, opts.resultTtlMs, opts.attempts);
    b.#conn = await connect(url, 'sdnode-server', true);
    b.#sub = await connect(url, 'sdnode-server-sub');
    b.#queue = new Queue<QueuedJob, StoredResult>(QUEUE_NAME, { connection: b.#conn, prefix: PREFIX, streams: { events: { maxLen: 2000 } } });
    b.#eventsConn = await connect(url, 'sdnode-server-events');
    b.#events = new QueueEvents(QUEUE_NAME, { connection: b.#eventsConn as never, prefix: PREFIX });
    b.#queue.on('error', () => {});
    b.#events.on('error', () => {});
    await b.#events.waitUntilReady();
    b.#events.on('progress', ({ jobId, data }) => b.#onProgress(jobId, data as unknown as ProgressData));
    b.#events.on('completed', ({ jobId }) => {
      b.#onCompleted(jobId).catch((err: unknown) => {
        const job = store.get(jobId);
        if (job) store.finish(job, 'failed', { error: { message: `the result could not be read from Redis: ${errorInfo(err).message}`, code: 'Io' } });
      });
    });
    b.#events.on('failed', ({ jobId, failedReason }) => b.#onFailed(jobId, failedReason));
    b.#events.on('removed', ({ jobId }) => {
      const job = store.get(jobId);
      if (job) store.finish(job, 'cancelled', { error: { message: 'removed from the queue', code: 'Cancelled' } });
    });
    await b.#sub.subscribe(k.preview);
    b.#sub.on('messageBuffer', (_ch: Buffer, msg: Buffer) => {
      // <id>\n<step>\n<mime>\n<bytes>
      const parts: Buffer[] = [];
      let pos = 0;
      for (let i = 0; i < 3; i++) {
        const nl = msg.indexOf(10, pos);
        if (nl < 0) return;
        parts.push(msg.subarray(pos, nl));
        pos = nl + 1;
      }
      const job = store.get(parts[0].toString());
      if (job) store.preview(job, { step: Number(parts[1].toString()), mime: parts[2].toString(), data: Buffer.from(msg.subarray(pos)) });
    });
    return b;
  }

  /** Models served by live workers (name -> entry), for validation and /sdapi/v1/sd-models. */
  async workerModels(): Promise<{
    workers: number;
    models: Array<Omit<ModelEntry, 'file'>>;
    loras: string[];
    controlnets: string[];
    embeddings: { loaded: EmbeddingEntry[]; skipped: Array<{ name: string; reason: string }> };
  }> {
    const all = await this.#conn.hgetall(k.workers);
    const now = Date.now();
    const models = new Map<string, Omit<ModelEntry, 'file'>>();
    const loras = new Set<string>();
    const controlnets = new Set<string>();
    const loaded = new Map<string, EmbeddingEntry>();
    const skipped = new Map<string, { name: string; reason: string }>();
    let workers = 0;
    for (const [id, v] of Object.entries(all)) {
      try {
        const w = JSON.parse(v) as {
          seen: number;
          models: Array<Omit<ModelEntry, 'file'>>;
          loras?: string[];
          controlnets?: string[];
          embeddings?: { loaded?: EmbeddingEntry[]; skipped?: Array<{ name: string; reason: string }> };
        };
        if (now - w.seen > WORKER_TTL_MS) {
          if (now - w.seen > 10 * WORKER_TTL_MS) await this.#conn.hdel(k.workers, id);
          continue;
        }
        workers++;
        for (const m of w.models) if (!models.has(m.name)) models.set(m.name, m);
        for (const l of w.loras ?? []) loras.add(l);
        for (const c of w.controlnets ?? []) controlnets.add(c);
        for (const e of w.embeddings?.loaded ?? []) if (!loaded.has(e.name)) loaded.set(e.name, e);
        for (const e of w.embeddings?.skipped ?? []) if (!skipped.has(e.name)) skipped.set(e.name, e);
      } catch {
        await this.#conn.hdel(k.workers, id);
      }
    }
    const byName = <T extends { name: string }>(m: Map<string, T>): T[] => [...m.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { workers, models: [...models.values()], loras: [...loras].sort(), controlnets: [...controlnets].sort(), embeddings: { loaded: byName(loaded), skipped: byName(skipped) } };
  }

  async queued(): Promise<number> {
    return this.#queue.getWaitingCount();
  }

  async submit(job: JobRecord): Promise<void> {
    await this.#queue.add(
      'generate',
      { request: job.request, model: job.model, createdAt: job.createdAt },
      {
        jobId: job.id,
        attempts: this.#attempts,
        backoff: { type: 'fixed', delay: 1000 },
        removeOnComplete: { age: Math.ceil(this.#ttlMs / 1000) },
        removeOnFail: { age: Math.ceil(this.#ttlMs / 1000) },
      },
    );
  }

  #onProgress(id: string, data: ProgressData): void {
    const job = this.#store.get(id);
    if (!job || typeof data !== 'object' || data === null) return;
    if (job.status === 'queued' || (data.phase === 'load' && job.worker !== data.worker) || (data.phase === 'load' && data.step === 0)) {
      job.status = 'queued'; // (re)started, possibly on another worker after a crash
      this.#store.started(job, data.worker);
    }
    const { worker: _w, model, ...p } = data;
    if (job.model === '' && typeof model === 'string') job.model = model;
    this.#store.progress(job, p);
  }

  async #loadResult(id: string, r: StoredResult): Promise<JobResult | undefined> {
    const images: JobImage[] = [];
    for (let i = 0; i < r.images.length; i++) {
      const png = await this.#conn.getBuffer(k.img(id, i));
      if (!png) return undefined; // expired
      images.push({ png, seed: r.images[i].seed, infotext: r.images[i].infotext });
    }
    return { images, parameters: r.parameters, elapsedMs: r.elapsedMs };
  }

  async #onCompleted(id: string): Promise<void> {
    const job = this.#store.get(id);
    if (!job || isFinal(job.status)) return;
    const q = await this.#queue.getJob(id);
    const rv = q?.returnvalue;
    const result = rv ? await this.#loadResult(id, rv) : undefined;
    if (result) {
      job.worker = rv!.worker;
      job.model = result.parameters.model;
      this.#store.finish(job, 'succeeded', { result });
    } else {
      this.#store.finish(job, 'failed', { error: { message: 'the result expired before it could be read', code: 'Expired' } });
    }
  }

  #onFailed(id: string, reason: string): void {
    const job = this.#store.get(id);
    if (!job) return;
    if (reason.startsWith(CANCELLED)) this.#store.finish(job, 'cancelled', { error: { message: reason.slice(CANCELLED.length), code: 'Cancelled' } });
    else if (/stalled more than allowable limit/.test(reason)) {
      const message = `the workers running this job stopped answering (crashed or were killed) more often than their --max-stalled allows (${reason})`;
      this.#store.finish(job, 'failed', { error: { message, code: 'Stalled' } });
    } else this.#store.finish(job, 'failed', { error: { message: reason, code: 'Failed' } });
  }

  /** Rebuilds a record from Redis (a job submitted before this server process started). */
  async find(id: string): Promise<JobRecord | undefined> {
    const q = await this.#queue.getJob(id);
    if (!q?.data?.request) return undefined;
    const state = await q.getState();
    const job = this.#store.create(q.data.request, q.data.model, id);
    job.createdAt = q.data.createdAt ?? q.timestamp;
    job.attempts = q.attemptsStarted ?? q.attemptsMade;
    const prog = q.progress as ProgressData | number;
    if (typeof prog === 'object' && prog) {
      const { worker, model, ...p } = prog;
      job.worker = worker;
      if (job.model === '' && model) job.model = model;
      job.progress = p;
    }
    const map: Record<string, JobStatus> = { active: 'running', completed: 'succeeded', failed: 'failed' };
    const status: JobStatus = map[state] ?? 'queued';
    if (status === 'running') {
      job.status = 'running';
      job.startedAt = q.processedOn;
    } else if (status === 'succeeded') {
      const result = q.returnvalue ? await this.#loadResult(id, q.returnvalue) : undefined;
      job.finishedAt = q.finishedOn;
      if (result) {
        job.status = 'succeeded';
        job.result = result;
        job.worker = q.returnvalue.worker;
      } else {
        job.status = 'failed';
        job.error = { message: 'the result images have expired', code: 'Expired' };
      }
      job.settle();
    } else if (status === 'failed') {
      const reason = q.failedReason ?? 'failed';
      job.finishedAt = q.finishedOn;
      job.status = reason.startsWith(CANCELLED) ? 'cancelled' : 'failed';
      job.error = { message: reason.startsWith(CANCELLED) ? reason.slice(CANCELLED.length) : reason, code: reason.startsWith(CANCELLED) ? 'Cancelled' : 'Failed' };
      job.settle();
    }
    return this.#store.adopt(job);
  }

  async cancel(job: JobRecord, reason: string): Promise<boolean> {
    if (isFinal(job.status)) return false;
    await this.#conn.set(k.cancelKey(job.id), reason, 'PX', this.#ttlMs);
    const q = await this.#queue.getJob(job.id);
    if (q) {
      const state = await q.getState();
      if (state !== 'active' && state !== 'completed' && state !== 'failed') {
        try {
          await q.remove();
          return this.#store.finish(job, 'cancelled', { error: { message: reason, code: 'Cancelled' } });
        } catch {
          // taken by a worker meanwhile: cancel it there
        }
      }
    }
    await this.#conn.publish(k.cancel, JSON.stringify({ id: job.id, reason }));
    const settled = await Promise.race([job.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000).unref())]);
    return settled && job.status === 'cancelled';
  }

  async close(): Promise<ShutdownSummary> {
    const leftQueued = this.#store.all().filter((j) => !isFinal(j.status)).map((j) => j.id);
    // bounded: with Redis gone, BullMQ's close() can wait for a reconnection that never comes
    const bounded = (p: Promise<unknown>): Promise<unknown> => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
    await bounded(this.#events.close());
    await bounded(this.#queue.close());
    this.#sub.disconnect();
    this.#conn.disconnect();
    this.#eventsConn.disconnect();
    return { finished: [], cancelled: [], leftQueued };
  }
}

/** Options of {@link startWorker}. */
export interface WorkerOptions {
  url: string;
  pool: ModelPool;
  /** Milliseconds without a lock renewal after which a job counts as stalled (worker crashed). */
  stallMs: number;
  /** Times a stalled job is put back before it fails. */
  maxStalled: number;
  log: (line: string) => void;
}

/** A running queue worker. */
export interface QueueWorker {
  id: string;
  /** Stops taking jobs; the running one may finish within `graceMs`, then it is given back to the queue. */
  close(graceMs: number): Promise<{ finished: string[]; requeued: string[] }>;
}

/** Permanent failures are not retried. */
function permanent(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'InvalidArgument' || code === 'Unsupported' || code === 'NotFound' || code === 'InvalidFile' || err instanceof HttpError;
}

/** Starts a worker: takes one job at a time from the queue and runs it on `pool`. */
export async function startWorker(opts: WorkerOptions): Promise<QueueWorker> {
  const { Worker: BullWorker, UnrecoverableError } = await import('bullmq');
  const id = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const conn = await connect(opts.url, 'sdnode-worker');
  const sub = await connect(opts.url, 'sdnode-worker-sub');
  const running = new Map<string, AbortController>();
  let shuttingDown = false;
  const models = opts.pool.entries.map(({ name, filename, sizeBytes }) => ({ name, filename, sizeBytes }));
  const heartbeat = async (): Promise<void> => {
    const loras = (() => {
      try {
        return loraNames(opts.pool.adapterDirs.loraDir);
      } catch {
        return [];
      }
    })();
    const embeddings = await embeddingEntries(opts.pool.adapterDirs.embeddingDir).catch(() => ({ loaded: [], skipped: [] }));
    const controlnets = (() => {
      try {
        return controlNetNames(opts.pool.adapterDirs.controlNetDir);
      } catch {
        return [];
      }
    })();
    await conn.hset(k.workers, id, JSON.stringify({ seen: Date.now(), models, loras, controlnets, embeddings, pid: process.pid, host: os.hostname() })).catch(() => {});
  };
  await heartbeat();
  const beat = setInterval(() => void heartbeat(), WORKER_TTL_MS / 3);
  beat.unref();

  await sub.subscribe(k.cancel);
  sub.on('message', (_ch: string, msg: string) => {
    try {
      const { id: jobId, reason } = JSON.parse(msg) as { id: string; reason: string };
      running.get(jobId)?.abort(reason);
    } catch {
      // not ours
    }
  });

  const processor = async (job: Job<QueuedJob, StoredResult>): Promise<StoredResult> => {
    const data = job.data;
    const controller = new AbortController();
    running.set(job.id!, controller);
    try {
      const pre = await conn.get(k.cancelKey(job.id!));
      if (pre !== null) throw new UnrecoverableError(`${CANCELLED}${pre}`);
      let name: string;
      try {
        name = opts.pool.resolve(data.model).name;
      } catch (err) {
        throw new UnrecoverableError(`worker ${id} does not serve model "${data.model}" (${errorInfo(err).message}); start every worker with the same --model list`);
      }
      opts.log(`job ${job.id}: ${name}, ${data.request.options.width}x${data.request.options.height}, ${data.request.options.steps} steps (attempt ${job.attemptsStarted ?? job.attemptsMade + 1})`);
      let lastSent = 0;
      let pending: Promise<void> = Promise.resolve();
      const sendProgress = (p: JobProgress, force = false): void => {
        const now = Date.now();
        if (!force && now - lastSent < 50 && p.step !== p.steps) return; // at most ~20 updates a second
        lastSent = now;
        pending = pending.then(() => job.updateProgress({ ...p, worker: id, model: name } as unknown as object)).catch(() => {});
      };
      sendProgress({ phase: 'load', step: 0, steps: 1, image: 0, images: data.request.options.batchCount, fraction: 0, etaMs: null }, true);
      let result: JobResult;
      try {
        result = await executeJob(opts.pool, name, data.request, {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.phase !== 'load') sendProgress(p);
          },
          onPreview: (p) => {
            const head = Buffer.from(`${job.id}\n${p.step}\n${p.mime}\n`);
            conn.publish(k.preview, Buffer.concat([head, p.data])).catch(() => {});
          },
        });
      } catch (err) {
        if (controller.signal.aborted) {
          if (shuttingDown && !(await conn.get(k.cancelKey(job.id!)))) throw err; // requeued by close()
          throw new UnrecoverableError(`${CANCELLED}${String(controller.signal.reason ?? 'cancelled')}`);
        }
        if (permanent(err)) throw new UnrecoverableError(errorInfo(err).message);
        throw err;
      }
      await pending;
      const ttl = Math.max(60_000, (job.opts.removeOnComplete as { age?: number } | undefined)?.age ? (job.opts.removeOnComplete as { age: number }).age * 1000 : 600_000);
      const multi = conn.multi();
      result.images.forEach((img, i) => multi.set(k.img(job.id!, i), img.png, 'PX', ttl));
      await multi.exec();
      opts.log(`job ${job.id}: done in ${(result.elapsedMs / 1000).toFixed(2)} s`);
      return { images: result.images.map((i) => ({ seed: i.seed, infotext: i.infotext })), parameters: result.parameters, elapsedMs: result.elapsedMs, worker: id };
    } finally {
      running.delete(job.id!);
    }
  };

  const bullConn = await connect(opts.url, 'sdnode-worker-bull');
  const worker: Worker<QueuedJob, StoredResult> = new BullWorker<QueuedJob, StoredResult>(QUEUE_NAME, processor, {
    connection: bullConn as never,
    prefix: PREFIX,
    concurrency: 1,
    lockDuration: opts.stallMs,
    stalledInterval: Math.max(500, Math.floor(opts.stallMs / 2)),
    maxStalledCount: opts.maxStalled,
    autorun: true,
  });
  worker.on('error', (err) => opts.log(`queue error: ${errorInfo(err).message}`));
  worker.on('failed', (job, err) => {
    if (job) opts.log(`job ${job.id}: ${err.message}`);
  });
  await worker.waitUntilReady();
  opts.log(`worker ${id} waiting for jobs (models: ${models.map((m) => m.name).join(', ')})`);

  return {
    id,
    async close(graceMs) {
      shuttingDown = true;
      const active = [...running.keys()];
      const aborted: string[] = [];
      const timer = setTimeout(() => {
        for (const [jobId, c] of running) {
          aborted.push(jobId);
          c.abort('the worker shut down');
        }
      }, graceMs);
      // close() waits for the running job; one aborted by the timer fails retryably and goes back to the queue.
      await worker.close();
      clearTimeout(timer);
      clearInterval(beat);
      await conn.hdel(k.workers, id).catch(() => {});
      sub.disconnect();
      conn.disconnect();
      bullConn.disconnect();
      await opts.pool.close();
      return { finished: active.filter((j) => !aborted.includes(j)), requeued: aborted };
    },
  };
}
