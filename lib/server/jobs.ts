/**
 * Jobs as the HTTP layer sees them: one record per job with its state, progress, latest preview and result, and a
 * listener list for the Server-Sent Events streams. The backends (local runner, Redis queue) update the records
 * through the methods of {@link JobStore}; every record settles exactly once.
 * @internal
 * @packageDocumentation
 */
import { randomUUID } from 'crypto';
import type { ResolvedGenerateOptions } from '../options';
import type { JobRequest } from './params';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** Progress as sent to clients. */
export interface JobProgress {
  phase: 'load' | 'encode' | 'sample' | 'decode';
  step: number;
  steps: number;
  image: number;
  images: number;
  /** Whole job, 0 to 1. */
  fraction: number;
  etaMs: number | null;
}

/** One finished image. */
export interface JobImage {
  png: Buffer;
  seed: number;
  /** A1111 infotext (also in the PNG's `parameters` chunk). */
  infotext: string;
}

/** What a succeeded job produced. */
export interface JobResult {
  images: JobImage[];
  /** The options used, without server paths (LoRA/embedding folders, ControlNet file) or input images. */
  parameters: Omit<ResolvedGenerateOptions, 'loraDir' | 'embeddingDir' | 'initImage' | 'mask' | 'controlNet'> & {
    model: string;
    /** The ControlNet by name (as the client gave it) and its settings; no path, no image. */
    controlNet?: { model: string; strength: number; start: number; end: number };
  };
  /** Engine milliseconds. */
  elapsedMs: number;
}

/** A preview image. */
export interface JobPreview {
  step: number;
  mime: string;
  data: Buffer;
}

/** One event of a job's SSE stream. */
export type JobEvent =
  | { type: 'status'; data: Record<string, unknown> }
  | { type: 'progress'; data: JobProgress }
  | { type: 'preview'; data: { step: number; image: string } }
  | { type: 'result'; data: Record<string, unknown> }
  | { type: 'error'; data: { status: JobStatus; message: string; code: string } };

export interface JobRecord {
  id: string;
  request: JobRequest;
  /** Resolved model name. */
  model: string;
  status: JobStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** Worker that runs or ran it (queue mode), or 'local'. */
  worker?: string;
  progress?: JobProgress;
  preview?: JobPreview;
  result?: JobResult;
  error?: { message: string; code: string };
  /** Times the job was started (more than 1 after a worker crash). */
  attempts: number;
  listeners: Set<(e: JobEvent) => void>;
  /** Resolves when the job settles. */
  done: Promise<void>;
  settle: () => void;
}

/** Fraction of the whole job done, from an engine progress event. */
export function fractionOf(p: { phase: string; step: number; steps: number; image: number; images: number }): number {
  if (p.phase === 'load' || p.phase === 'encode') return 0;
  if (p.phase === 'sample') return Math.min(0.99, (p.image * p.steps + p.step) / Math.max(1, p.steps * p.images) * 0.95);
  return Math.min(0.99, 0.95 + (0.05 * p.step) / Math.max(1, p.steps));
}

/** In-memory job records, kept for `ttlMs` after they settle. */
export class JobStore {
  readonly ttlMs: number;
  #jobs = new Map<string, JobRecord>();
  #timers = new Map<string, NodeJS.Timeout>();
  /** Called whenever a job settles (counts for tests and the shutdown summary). */
  onSettled: ((job: JobRecord) => void) | undefined;

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }

  create(request: JobRequest, model: string, id: string = randomUUID()): JobRecord {
    let settle = (): void => {};
    const done = new Promise<void>((r) => (settle = r));
    const job: JobRecord = { id, request, model, status: 'queued', createdAt: Date.now(), attempts: 0, listeners: new Set(), done, settle };
    this.#jobs.set(id, job);
    return job;
  }

  /** Adds a record rebuilt from elsewhere (the Redis queue after a server restart). */
  adopt(job: JobRecord): JobRecord {
    const have = this.#jobs.get(job.id);
    if (have) return have;
    this.#jobs.set(job.id, job);
    if (isFinal(job.status)) this.#expire(job);
    return job;
  }

  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  all(): JobRecord[] {
    return [...this.#jobs.values()];
  }

  emit(job: JobRecord, e: JobEvent): void {
    for (const l of job.listeners) {
      try {
        l(e);
      } catch {
        job.listeners.delete(l);
      }
    }
  }

  started(job: JobRecord, worker: string): void {
    if (isFinal(job.status)) return;
    job.status = 'running';
    job.startedAt = Date.now();
    job.worker = worker;
    job.attempts++;
    this.emit(job, { type: 'status', data: publicStatus(job) });
  }

  progress(job: JobRecord, p: Omit<JobProgress, 'fraction'> & { fraction?: number }): void {
    if (isFinal(job.status)) return;
    const full: JobProgress = { ...p, fraction: p.fraction ?? fractionOf(p) };
    job.progress = full;
    this.emit(job, { type: 'progress', data: full });
  }

  preview(job: JobRecord, preview: JobPreview): void {
    if (isFinal(job.status)) return;
    job.preview = preview;
    this.emit(job, { type: 'preview', data: { step: preview.step, image: `data:${preview.mime};base64,${preview.data.toString('base64')}` } });
  }

  /** Settles a job; later calls for the same job are ignored (returns false). */
  finish(job: JobRecord, status: 'succeeded' | 'failed' | 'cancelled', outcome: { result?: JobResult; error?: { message: string; code: string } }): boolean {
    if (isFinal(job.status)) return false;
    job.status = status;
    job.finishedAt = Date.now();
    job.result = outcome.result;
    job.error = outcome.error;
    job.preview = undefined;
    if (status === 'succeeded') {
      job.progress = job.progress ? { ...job.progress, fraction: 1, etaMs: 0 } : undefined;
      this.emit(job, { type: 'result', data: publicStatus(job) });
    } else {
      this.emit(job, { type: 'error', data: { status, message: job.error?.message ?? status, code: job.error?.code ?? status } });
    }
    job.listeners.clear();
    job.settle();
    this.#expire(job);
    this.onSettled?.(job);
    return true;
  }

  #expire(job: JobRecord): void {
    const t = setTimeout(() => {
      this.#jobs.delete(job.id);
      this.#timers.delete(job.id);
    }, this.ttlMs);
    t.unref();
    this.#timers.set(job.id, t);
  }

  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }
}

export function isFinal(s: JobStatus): boolean {
  return s === 'succeeded' || s === 'failed' || s === 'cancelled';
}

/** The JSON clients see for a job (GET /v1/jobs/:id, SSE status/result events). Image URLs are relative. */
export function publicStatus(job: JobRecord, ttlMs?: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: job.id,
    status: job.status,
    model: job.model,
    createdAt: new Date(job.createdAt).toISOString(),
    startedAt: job.startedAt ? new Date(job.startedAt).toISOString() : null,
    finishedAt: job.finishedAt ? new Date(job.finishedAt).toISOString() : null,
    attempts: job.attempts,
    progress: job.progress ?? null,
  };
  if (job.worker) out.worker = job.worker;
  if (job.result) {
    out.images = job.result.images.map((img, i) => ({ url: `/v1/jobs/${job.id}/images/${i}.png`, seed: img.seed, infotext: img.infotext }));
    out.parameters = job.result.parameters;
    out.info = a1111Info(job.result);
    out.elapsedMs = Math.round(job.result.elapsedMs);
  }
  if (job.error) out.error = job.error;
  if (job.finishedAt && ttlMs !== undefined) out.expiresAt = new Date(job.finishedAt + ttlMs).toISOString();
  return out;
}

/** A1111's `info` object (sent as a JSON string by /sdapi/v1/txt2img). */
export function a1111Info(r: JobResult): Record<string, unknown> {
  const p = r.parameters;
  const label = r.images[0]?.infotext.match(/Sampler: ([^,]+)/)?.[1] ?? p.sampler;
  return {
    prompt: p.prompt,
    all_prompts: r.images.map(() => p.prompt),
    negative_prompt: p.negativePrompt,
    all_negative_prompts: r.images.map(() => p.negativePrompt),
    seed: p.seed,
    all_seeds: r.images.map((i) => i.seed),
    subseed: -1,
    all_subseeds: r.images.map(() => -1),
    width: p.width,
    height: p.height,
    sampler_name: label,
    scheduler: p.scheduler === 'discrete' ? 'Automatic' : p.scheduler,
    cfg_scale: p.cfgScale,
    steps: p.steps,
    batch_size: r.images.length,
    clip_skip: p.clipSkip,
    denoising_strength: p.strength ?? null,
    sd_model_name: p.model,
    infotexts: r.images.map((i) => i.infotext),
    version: 'sdnode',
  };
}
