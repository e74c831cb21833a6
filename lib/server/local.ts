/**
 * The in-process backend: jobs wait in a FIFO queue and run on this process's models, at most `maxConcurrent` at
 * a time (calls on one model always run one after another on its engine thread).
 * @internal
 * @packageDocumentation
 */
import { AbortError } from '../errors';
import { executeJob } from './execute';
import { isFinal, type JobRecord, type JobStore } from './jobs';
import type { ModelPool } from './models';

/** What a backend does for the HTTP layer. */
export interface Backend {
  readonly mode: 'local' | 'redis';
  /** Jobs waiting (not running). */
  queued(): Promise<number>;
  /** Starts or enqueues a job whose record exists. */
  submit(job: JobRecord): Promise<void>;
  /** Cancels a queued or running job; false if it had already settled. */
  cancel(job: JobRecord, reason: string): Promise<boolean>;
  /** Finds a job this process has no record of (queue mode: jobs from before a restart). */
  find(id: string): Promise<JobRecord | undefined>;
  /** Running jobs are given `graceMs` to finish, then cancelled; queued ones are cancelled (local) or left in the queue (redis). */
  close(graceMs: number): Promise<ShutdownSummary>;
}

export interface ShutdownSummary {
  finished: string[];
  cancelled: string[];
  /** Jobs left in the Redis queue for workers (queue mode). */
  leftQueued: string[];
}

export function errorInfo(err: unknown): { message: string; code: string } {
  const e = err as { message?: unknown; code?: unknown; name?: unknown } | null;
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    code: typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'Error',
  };
}

export class LocalBackend implements Backend {
  readonly mode = 'local' as const;
  #store: JobStore;
  #pool: ModelPool;
  #maxConcurrent: number;
  #waiting: JobRecord[] = [];
  #running = new Map<string, { job: JobRecord; controller: AbortController }>();
  #closing = false;

  constructor(store: JobStore, pool: ModelPool, maxConcurrent: number) {
    this.#store = store;
    this.#pool = pool;
    this.#maxConcurrent = maxConcurrent;
  }

  async queued(): Promise<number> {
    return this.#waiting.length;
  }

  async submit(job: JobRecord): Promise<void> {
    this.#waiting.push(job);
    this.#pump();
  }

  async find(): Promise<JobRecord | undefined> {
    return undefined;
  }

  /** Position in the local queue (0 = next), or -1. */
  position(job: JobRecord): number {
    return this.#waiting.indexOf(job);
  }

  #pump(): void {
    while (!this.#closing && this.#running.size < this.#maxConcurrent && this.#waiting.length > 0) {
      const job = this.#waiting.shift()!;
      const controller = new AbortController();
      this.#running.set(job.id, { job, controller });
      this.#store.started(job, 'local');
      executeJob(this.#pool, job.model, job.request, {
        signal: controller.signal,
        onProgress: (p) => this.#store.progress(job, p),
        onPreview: (p) => this.#store.preview(job, p),
      })
        .then(
          (result) => this.#store.finish(job, 'succeeded', { result }),
          (err: unknown) => {
            if (controller.signal.aborted) this.#store.finish(job, 'cancelled', { error: { message: String(controller.signal.reason ?? 'cancelled'), code: 'Cancelled' } });
            else this.#store.finish(job, 'failed', { error: errorInfo(err) });
          },
        )
        .finally(() => {
          this.#running.delete(job.id);
          this.#pump();
        });
    }
  }

  async cancel(job: JobRecord, reason: string): Promise<boolean> {
    if (isFinal(job.status)) return false;
    const i = this.#waiting.indexOf(job);
    if (i >= 0) {
      this.#waiting.splice(i, 1);
      return this.#store.finish(job, 'cancelled', { error: { message: reason, code: 'Cancelled' } });
    }
    const r = this.#running.get(job.id);
    if (r) {
      r.controller.abort(reason);
      await job.done;
      return job.status === 'cancelled';
    }
    return false;
  }

  async close(graceMs: number): Promise<ShutdownSummary> {
    this.#closing = true;
    const cancelled: string[] = [];
    for (const job of this.#waiting.splice(0)) {
      this.#store.finish(job, 'cancelled', { error: { message: 'the server shut down before this job started', code: 'Cancelled' } });
      cancelled.push(job.id);
    }
    const running = [...this.#running.values()];
    const timer = setTimeout(() => {
      for (const r of running) r.controller.abort(new AbortError('the server shut down while this job was running'));
    }, graceMs);
    await Promise.all(running.map((r) => r.job.done));
    clearTimeout(timer);
    const finished: string[] = [];
    for (const r of running) (r.job.status === 'cancelled' ? cancelled : finished).push(r.job.id);
    return { finished, cancelled, leftQueued: [] };
  }
}
