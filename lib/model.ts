/**
 * Models: loading, queued generation with progress, previews and cancellation, and disposal.
 * @packageDocumentation
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { binding, type NativeAbortHandle, type NativeGenerateParams, type NativeImage, type NativeModel, type NativeModelInfo, type NativePreview, type NativeProgress } from './binding';
import { AbortError, DisposedError, InvalidOptionError, fromNative } from './errors';
import { GeneratedImage, inputPixels, openInputImage, type ImageModelInfo } from './image';
import { fallbackMergesFor } from './tokenizer';
import { readRecord, writeRecord } from './cache';
import { deviceForLoad } from './device';
import {
  checkSizeForModel,
  integer,
  invalid,
  isPlainObject,
  checkKeys,
  optionalFunction,
  optionalSignal,
  oneOf,
  PREVIEW_METHODS,
  resolveGenerateOptions,
  defaultSizeFor,
  resolveLoadOptions,
  resolveModelSource,
  type GenerateOptions,
  type LoadOptions,
  type LoadProgressEvent,
  type ModelParts,
  type ModelSource,
  type PreviewMethod,
  type ResolvedGenerateOptions,
  type ResolvedLoadOptions,
} from './options';

if (typeof (Symbol as { asyncDispose?: symbol }).asyncDispose !== 'symbol') {
  // Node < 18.18 / 20.4: the well-known symbol that `await using` looks up.
  Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('nodejs.asyncDispose') });
}

/** What a model file holds (from its headers) — also returned by {@link inspect}. */
export interface ModelInfo {
  /** Absolute path of the file or folder. */
  path: string;
  /** `'safetensors'`, `'gguf'`, `'diffusers'` or `'ckpt'`. */
  format: string;
  /** `'sd1'`, `'sd2'`, `'sdxl'` or `'unknown'`. */
  family: string;
  /** `'base'`, `'inpaint'`, ... (`''` if unknown). */
  variant: string;
  /** `'eps'`, `'v'` or `''` when not declared (inspect); for a loaded model, the type used. */
  prediction: string;
  /**
   * How `prediction` was decided: `'file'` (declared by metadata or a marker tensor), `'family'` (SD 1.x and SDXL
   * default to eps), `'option'` (LoadOptions.prediction), `'probe'` (an SD 2.x file that declares nothing: the U-Net
   * run once on constant inputs), or `''` (not decided by inspect: an SD 2.x file is probed when loaded).
   */
  predictionSource: string;
  /** Whether this engine can generate with it. */
  runnable: boolean;
  /** Why not, when `runnable` is false. */
  notRunnableReason: string;
  /** Number of tensors. */
  tensorCount: number;
  /** Number of parameters (tensor elements). */
  parameterCount: number;
  /** Bytes of tensor data. */
  sizeBytes: number;
  /** Tensor counts per data type name (`'f16'`, `'q8_0'`, ...). */
  tensorsByType: Record<string, number>;
  /** Selected metadata key-values. */
  metadata: Record<string, string>;
  /** Whether CLIP merges are embedded or were found next to the model. */
  hasTokenizer: boolean;
  /**
   * Width and height must be multiples of this: 8 × 2^(U-Net downsamplings), 64 for SD 1.x; 0 when unknown (no
   * U-Net in the file).
   */
  sizeMultiple: number;
}

/** Phases of a generation, in order, for each image of a batch. */
export type GenerationPhase = 'encode' | 'sample' | 'decode';

/** Progress of {@link Model.generate}. */
export interface ProgressEvent {
  /** Current phase. */
  phase: GenerationPhase;
  /** Steps done in this phase (sampling: denoising steps done). */
  step: number;
  /** Steps in this phase. */
  steps: number;
  /** Index of the image in the batch (0-based). */
  image: number;
  /** Images in the batch. */
  images: number;
  /** Milliseconds since this call started running (queueing time excluded). */
  elapsedMs: number;
  /** Estimated milliseconds until the call finishes; undefined until a sampling step has been timed. */
  etaMs: number | undefined;
}

/** A preview during sampling: a cheap approximation of the current image (latent-resolution). */
export interface PreviewEvent {
  /** Sampling step the preview shows. */
  step: number;
  /** The preview image (encodable with toPNG() etc.; no metadata). */
  image: GeneratedImage;
}

/** Per-call options of {@link Model.generate}. */
export interface GenerateCallOptions {
  /** Cancels the call, queued or running: the promise rejects with {@link AbortError} and its memory is released. */
  signal?: AbortSignal;
  /** Progress callback (every phase and step). If it throws, the call is aborted and rejects with that error. */
  onProgress?: (event: ProgressEvent) => void;
  /** Preview callback. If it throws, the call is aborted and rejects with that error. */
  onPreview?: (event: PreviewEvent) => void;
  /** A preview every N sampling steps (1 to 1000). Default 1 when `onPreview` is given. */
  previewEvery?: number;
  /**
   * How previews are made: `'latent'` (default; a linear latent-to-RGB map at 1/8 of the image size, almost free)
   * or `'taesd'` (the TAESD decoder at full size, one TAESD decode per preview; needs `taesdPath` at load).
   */
  previewMethod?: PreviewMethod;
}

/** What {@link Model.generate} resolves to. */
export interface GenerationResult {
  /** The images, one per batch entry, seeds seed, seed+1, ... */
  images: GeneratedImage[];
  /** Parameters used, defaults and the seed resolved. */
  parameters: ResolvedGenerateOptions;
  /** Milliseconds the engine ran (queueing excluded). */
  elapsedMs: number;
  /** Milliseconds the call waited in the model's queue. */
  queuedMs: number;
  /**
   * What the adapters reported: LoRA tensors that match no weight of this model (not applied) or of kinds not
   * supported (LoHa, LoKr, ...). Empty when there is nothing to say.
   */
  warnings: string[];
  /** Bytes of merged LoRA weights the model holds now (memory added beyond the model file; 0 without LoRAs). */
  adapterBytes: number;
}

interface Job {
  params: ResolvedGenerateOptions;
  call: {
    signal?: AbortSignal;
    onProgress?: (e: ProgressEvent) => void;
    onPreview?: (e: PreviewEvent) => void;
    previewEvery: number;
    previewMethod: PreviewMethod;
  };
  resolve: (r: GenerationResult) => void;
  reject: (e: unknown) => void;
  site: Error;
  queuedAt: number;
  handle?: NativeAbortHandle;
  /** Set when a callback threw: the call rejects with `userError` (which may itself be `undefined`). */
  failed: boolean;
  userError?: unknown;
  detach: () => void;
}

function abortErrorFor(signal: AbortSignal | undefined, what: string): AbortError {
  return new AbortError(`The ${what} was aborted`, signal?.reason !== undefined ? { cause: signal.reason } : undefined);
}

function resolveCallOptions(options: unknown): Job['call'] {
  if (options === undefined) return { previewEvery: 0, previewMethod: 'latent' };
  if (!isPlainObject(options)) invalid('callOptions', 'an object', options);
  checkKeys(options, ['signal', 'onProgress', 'onPreview', 'previewEvery', 'previewMethod'], 'generate call options');
  const onPreview = optionalFunction<(e: PreviewEvent) => void>('onPreview', options.onPreview);
  const every = options.previewEvery === undefined ? 1 : integer('previewEvery', options.previewEvery, 1, 1000);
  return {
    signal: optionalSignal('signal', options.signal),
    onProgress: optionalFunction<(e: ProgressEvent) => void>('onProgress', options.onProgress),
    onPreview,
    previewEvery: onPreview ? every : 0,
    previewMethod: options.previewMethod === undefined ? 'latent' : oneOf('previewMethod', options.previewMethod, PREVIEW_METHODS),
  };
}

/**
 * Estimates the remaining time of a run from the engine's own timestamps. The engine reports: encode 0/1, 1/1
 * (once); for each image, sample 0..steps; then decode i/N -> i+1/N for each image.
 */
class Eta {
  private key = '';
  private segStart = 0;
  private last = 0;
  private stepMs: number | undefined;
  private decodeMs: number | undefined;

  update(p: NativeProgress): number | undefined {
    const key = `${p.phase}:${p.image}`;
    if (key !== this.key) {
      this.key = key;
      this.segStart = this.last;
    }
    this.last = p.timeMs;
    const inSegment = p.timeMs - this.segStart;
    if (p.phase === 'sample' && p.step > 0) this.stepMs = inSegment / p.step;
    if (p.phase === 'decode' && p.step > p.image) this.decodeMs = inSegment;
    if (this.stepMs === undefined) return undefined;
    const decodeEach = this.decodeMs ?? this.stepMs; // until a decode is timed, guess one step's time
    let rest: number;
    if (p.phase === 'sample') {
      rest = (p.steps - p.step) * this.stepMs + (p.images - p.image - 1) * p.steps * this.stepMs + p.images * decodeEach;
    } else if (p.phase === 'decode') {
      rest = (p.steps - p.step) * decodeEach;
    } else {
      return undefined;
    }
    return Math.max(0, Math.round(rest));
  }
}

/**
 * A loaded model. Calls to {@link Model.generate} are queued and run one at a time, in order, on the model's own
 * engine thread; each can be aborted while queued or running. Release it with {@link Model.dispose} (or
 * `await using model = await loadModel(...)`).
 */
export class Model {
  /** What the model is (family, format, tensor counts, ...). */
  readonly info: ModelInfo;
  /** Where it was loaded from. */
  readonly source: ModelSource;
  /**
   * The device it runs on and, for `device: 'auto'`, why: e.g. `'vulkan:0 NVIDIA H200, 139 GiB'`,
   * `'cpu: no Vulkan loader found (libvulkan.so.1)'` or `'cpu: requested'`.
   */
  readonly device: string;
  #native: NativeModel;
  #queue: Job[] = [];
  #running: Job | undefined;
  #disposed = false;
  #disposing: Promise<void> | undefined;
  #hash: Promise<string | undefined> | undefined;
  #knownHash: string | undefined;

  /** @internal Use {@link loadModel}. */
  constructor(native: NativeModel, info: ModelInfo, source: ModelSource, device = 'cpu') {
    this.#native = native;
    this.info = info;
    this.source = source;
    this.device = device;
  }

  /** True once {@link Model.dispose} has been called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Calls waiting or running on this model. */
  get pending(): number {
    return this.#queue.length + (this.#running ? 1 : 0);
  }

  /**
   * A1111's short model hash (first 10 hex digits of the SHA-256 of the model file), computed once, on demand,
   * by streaming the file (the event loop stays free), and remembered in the per-user cache by path, size and
   * modification time, so later runs do not read the whole file again. Undefined for folders and parts.
   */
  hash(): Promise<string | undefined> {
    if (!this.#hash) {
      this.#hash = modelFileHash(this.source);
      this.#hash.then(
        (h) => {
          this.#knownHash = h;
        },
        () => {},
      );
    }
    return this.#hash;
  }

  /**
   * The short model hash if it is already known (computed earlier, or found in the per-user hash cache when the
   * model was loaded), without reading the file; undefined otherwise.
   */
  get knownHash(): string | undefined {
    return this.#knownHash;
  }

  /** @internal Sets the hash found in the per-user cache at load time. */
  _setKnownHash(h: string | undefined): void {
    if (h && this.#knownHash === undefined) {
      this.#knownHash = h;
      this.#hash ??= Promise.resolve(h);
    }
  }

  /**
   * Generates images. Every option is validated before any native work; invalid ones reject with
   * {@link InvalidOptionError}. Calls on one model run in order.
   * @param options - what to generate (prompt, size, steps, sampler, seed, ...)
   * @param callOptions - signal, onProgress, onPreview, previewEvery
   * @returns the images and the parameters used
   */
  generate(options: GenerateOptions, callOptions?: GenerateCallOptions): Promise<GenerationResult> {
    const site = new Error('generate');
    let params: ResolvedGenerateOptions;
    let call: Job['call'];
    try {
      if (this.#disposed) throw new DisposedError('Cannot generate: the model has been disposed');
      params = resolveGenerateOptions(options, defaultSizeFor(this.info.family, this.info.prediction));
      checkSizeForModel(params.width, params.height, this.info.sizeMultiple, this.info.family);
      call = resolveCallOptions(callOptions);
      if (call.signal?.aborted) throw abortErrorFor(call.signal, 'generation');
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<GenerationResult>((resolve, reject) => {
      const job: Job = { params, call, resolve, reject, site, queuedAt: performance.now(), failed: false, detach: () => {} };
      const signal = call.signal;
      if (signal) {
        const onAbort = (): void => {
          if (this.#running === job) {
            job.handle?.abort(); // the engine stops at its next poll; the native promise rejects with Aborted
          } else {
            const i = this.#queue.indexOf(job);
            if (i >= 0) {
              this.#queue.splice(i, 1);
              job.detach();
              reject(abortErrorFor(signal, 'generation'));
            }
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        job.detach = () => {
          try {
            signal.removeEventListener('abort', onAbort);
          } catch {
            // a signal-like object whose removeEventListener throws must not wedge the queue
          }
        };
      }
      this.#queue.push(job);
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#running || this.#queue.length === 0) return;
    const job = this.#queue.shift()!;
    this.#running = job;
    const startedAt = performance.now();
    const b = binding();
    const handle = new b.AbortHandle();
    job.handle = handle;
    const fail = (err: unknown): void => {
      if (!job.failed) {
        job.failed = true;
        job.userError = err;
        handle.abort();
      }
    };
    const eta = new Eta();
    const onProgress = job.call.onProgress
      ? (p: NativeProgress): void => {
          if (job.failed) return;
          try {
            const etaMs = eta.update(p);
            job.call.onProgress!({ phase: p.phase, step: p.step, steps: p.steps, image: p.image, images: p.images, elapsedMs: p.timeMs, etaMs });
          } catch (err) {
            fail(err);
          }
        }
      : null;
    const onPreview = job.call.onPreview
      ? (p: NativePreview): void => {
          if (job.failed) return;
          try {
            job.call.onPreview!({ step: p.step, image: new GeneratedImage(p) });
          } catch (err) {
            fail(err);
          }
        }
      : null;
    const params = job.params;
    const modelInfo: ImageModelInfo = { name: modelName(this.source), hash: () => this.hash(), knownHash: () => this.#knownHash };
    let native: Promise<NativeImage[]>;
    let inputError: unknown;
    const start = (inputs: NativeInputs): Promise<NativeImage[]> => {
      const { initImage: _i, mask: _m, controlNet: _c, ...plain } = params;
      const nativeParams: NativeGenerateParams = {
        ...plain,
        strength: params.strength ?? 1,
        previewEvery: job.call.previewEvery,
        previewMethod: job.call.previewMethod,
        ...inputs,
      };
      return this.#native.generate(nativeParams, onProgress, onPreview, handle);
    };
    try {
      native =
        params.initImage === undefined && params.controlNet === undefined
          ? start({})
          : decodeInputs(params).then(start, (err: unknown) => {
              inputError = err;
              throw err;
            });
    } catch (err) {
      native = Promise.reject(err);
    }
    const settle = (images: NativeImage[] | undefined, err: unknown): void => {
      // An aborted call never resolves, even when the engine finished its last phase before it saw the abort
      // (the JS thread may have been busy while the result was already on its way).
      if (job.failed) job.reject(job.userError);
      else if (job.call.signal?.aborted) job.reject(abortErrorFor(job.call.signal, 'generation'));
      else if (inputError !== undefined) job.reject(inputError);
      else if (images === undefined) job.reject(fromNative(err, 'generate', job.site));
      else {
        job.resolve({
          images: images.map((img) => new GeneratedImage(img, { ...params, seed: img.seed, model: modelInfo })),
          parameters: params,
          elapsedMs: performance.now() - startedAt,
          queuedMs: startedAt - job.queuedAt,
          warnings: images[0]?.warnings ?? [],
          adapterBytes: images[0]?.adapterBytes ?? 0,
        });
      }
    };
    const finish = (images: NativeImage[] | undefined, err: unknown): void => {
      try {
        job.detach(); // never throws
        this.#running = undefined; // `pending` no longer counts this call when its promise settles
        settle(images, err);
      } catch (e) {
        job.reject(e); // e.g. a GeneratedImage constructor failure: reject, never leak
      } finally {
        this.#pump();
      }
    };
    native.then(
      (images) => finish(images, undefined),
      (err: unknown) => finish(undefined, err),
    );
  }

  /**
   * Releases the model. Calls still queued reject with {@link DisposedError}; a running call finishes first (its
   * memory is never freed under it). Later calls reject with DisposedError. Safe to call more than once.
   */
  dispose(): Promise<void> {
    if (this.#disposing) return this.#disposing;
    this.#disposed = true;
    const queued = this.#queue.splice(0);
    for (const job of queued) {
      job.detach();
      job.reject(new DisposedError('The model was disposed before this generation started'));
    }
    this.#disposing = this.#native.dispose().catch((err: unknown) => {
      throw fromNative(err, 'dispose');
    });
    return this.#disposing;
  }

  /** `await using model = await loadModel(...)` disposes the model at the end of the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

type NativeInputs = Pick<NativeGenerateParams, 'initImage' | 'mask' | 'controlNet'>;

/** Decodes and resizes the init image, the mask and the control image (sharp works off the JavaScript thread). */
async function decodeInputs(params: ResolvedGenerateOptions): Promise<NativeInputs> {
  const out: NativeInputs = {};
  const c = params.controlNet;
  if (c) {
    // the control image is used as given (no preprocessor), only brought to the output size like the init image
    const img = await inputPixels('controlNet.image', await openInputImage('controlNet.image', c.image), params.width, params.height, 'rgb');
    out.controlNet = { model: c.model, strength: c.strength, start: c.start, end: c.end, imageWidth: img.width, imageHeight: img.height, imageRgb: img.data };
  }
  if (params.initImage === undefined) return out;
  const init = await openInputImage('initImage', params.initImage);
  out.initImage = await inputPixels('initImage', init, params.width, params.height, 'rgb');
  if (params.mask !== undefined) {
    const mask = await openInputImage('mask', params.mask);
    if (mask.width !== init.width || mask.height !== init.height) {
      throw new InvalidOptionError(
        `mask: the mask is ${mask.width}x${mask.height} but initImage is ${init.width}x${init.height}; give a mask of the init image's size (white = repaint)`,
        'mask',
      );
    }
    out.mask = await inputPixels('mask', mask, params.width, params.height, 'grey', params.maskBlur);
  }
  return out;
}

function modelName(source: ModelSource): string {
  const p = typeof source === 'string' ? source : source.file || source.unet || '';
  const base = path.basename(p.replace(/[\\/]+$/, ''));
  return base.replace(/\.(safetensors|ckpt|gguf|pt|pth|bin)$/i, '');
}

interface HashRecord {
  size: number;
  mtimeMs: number;
  sha256: string;
}

const HASH_CACHE = 'model-hashes.json';

/**
 * The SHA-256 of a model file, from the per-user cache when the file's path, size and mtime match the cached
 * record; `compute: false` only looks there. Computing streams the file (the event loop stays free) and records
 * the result. Undefined for folders, parts and missing files.
 * @internal
 */
export async function modelFileSha256(source: ModelSource, compute = true): Promise<string | undefined> {
  if (typeof source !== 'string') return undefined;
  const file = path.resolve(source);
  const st = await fs.promises.stat(file).catch(() => undefined);
  if (!st?.isFile()) return undefined;
  const rec = (await readRecord<HashRecord>(HASH_CACHE))[file];
  if (rec && rec.size === st.size && rec.mtimeMs === st.mtimeMs && /^[0-9a-f]{64}$/.test(rec.sha256)) return rec.sha256;
  if (!compute) return undefined;
  const h = createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    fs.createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve());
  });
  const sha256 = h.digest('hex');
  const after = await fs.promises.stat(file).catch(() => undefined);
  // a file rewritten while it was read is not recorded
  if (after && after.size === st.size && after.mtimeMs === st.mtimeMs) {
    await writeRecord<HashRecord>(HASH_CACHE, file, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
  }
  return sha256;
}

async function modelFileHash(source: ModelSource): Promise<string | undefined> {
  return (await modelFileSha256(source))?.slice(0, 10);
}

/** @internal Shared by loadModel and the test double (lib/testing.ts). Options must be validated already. */
export async function openModel(
  source: ModelSource,
  opts: ResolvedLoadOptions,
  load: (native: NativeModel, onProgress: ((f: number) => void) | null, handle: NativeAbortHandle) => Promise<NativeModelInfo>,
  site: Error = new Error('loadModel'),
  deviceNote?: string,
): Promise<Model> {
  const signal = opts.signal;
  if (signal?.aborted) throw abortErrorFor(signal, 'model load');
  const b = binding();
  const native = new b.Model();
  const handle = new b.AbortHandle();
  const onAbort = (): void => handle.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let failed = false;
  let userError: unknown;
  const onProgress = opts.onProgress
    ? (f: number): void => {
        if (failed) return;
        try {
          opts.onProgress!({ progress: f } satisfies LoadProgressEvent);
        } catch (err) {
          failed = true;
          userError = err;
          handle.abort();
        }
      }
    : null;
  try {
    const { device, ...info } = (await load(native, onProgress, handle)) as NativeModelInfo & { device?: string };
    const model = new Model(native, info, source, deviceNote ?? device ?? 'cpu');
    // a hash recorded by an earlier run (same path, size and mtime) is known at once; nothing is computed here
    model._setKnownHash((await modelFileSha256(source, false).catch(() => undefined))?.slice(0, 10));
    return model;
  } catch (err) {
    if (failed) throw userError;
    if (signal?.aborted && (err as { code?: string })?.code === 'Aborted') throw abortErrorFor(signal, 'model load');
    throw fromNative(err, 'load', site);
  } finally {
    try {
      signal?.removeEventListener('abort', onAbort);
    } catch {
      // a signal-like object whose removeEventListener throws: nothing to undo
    }
  }
}

/**
 * Loads a model: a single file (`.safetensors`, `.ckpt`, `.gguf`), a diffusers folder, or separate parts.
 * Weights are memory-mapped where possible; `weightType` converts or quantizes them while loading.
 * @param pathOrParts - file or folder path, or `{ unet, vae, textEncoder, tokenizer? }`
 * @param options - threads, weightType, tokenizerPath, onProgress, signal
 * @returns the loaded model; rejects with ModelLoadError, UnsupportedError, InsufficientMemoryError,
 *   InvalidOptionError or AbortError
 */
export async function loadModel(pathOrParts: ModelSource, options?: LoadOptions): Promise<Model> {
  const site = new Error('loadModel');
  const src = resolveModelSource(pathOrParts);
  const opts = resolveLoadOptions(options);
  const nativeSource = typeof src === 'string' ? path.resolve(src) : src;
  // model.source: the parts as given (empty optional fields left out)
  let source: ModelSource = src;
  if (typeof src !== 'string') {
    const parts: Record<string, string> = {};
    for (const [k, v] of Object.entries(src)) if (v) parts[k] = v;
    source = parts as ModelParts;
  }
  const fallbackMerges = await fallbackMergesFor(opts.tokenizerPath || (typeof src === 'string' ? undefined : src.tokenizer));
  // GPU devices are test-loaded in a child process before the engine uses them (lib/device.ts)
  let target: { spec: string; description?: string };
  try {
    target = await deviceForLoad(opts.device);
  } catch (err) {
    throw fromNative(err, 'load', site);
  }
  return openModel(source, opts, (native, onProgress, handle) =>
    native.load(
      nativeSource,
      {
        threads: opts.threads,
        weightType: opts.weightType,
        tokenizerPath: opts.tokenizerPath,
        prediction: opts.prediction,
        fallbackMerges,
        device: target.spec,
        vramBudget: opts.vramBudget,
        vaeTiling: opts.vaeTiling,
        textEncoderOnCpu: opts.textEncoderOnCpu ? 1 : 0,
        vaeOnCpu: opts.vaeOnCpu ? 1 : 0,
        taesdPath: opts.taesdPath ? path.resolve(opts.taesdPath) : '',
      },
      onProgress,
      handle,
    ),
  site, target.description);
}
