/**
 * Runs one job on a model from the pool: load (if needed), generate with progress and previews, encode the PNGs.
 * Shared by the local runner and the queue worker.
 * @internal
 * @packageDocumentation
 */
import * as path from 'path';
import type { GeneratedImage } from '../image';
import type { JobPreview, JobProgress, JobResult } from './jobs';
import { fractionOf } from './jobs';
import type { ModelPool } from './models';
import { decodeBase64Image, engineImages, type JobRequest } from './params';
import { InvalidOptionError } from '../errors';
import type { GenerateOptions } from '../options';
import { controlNetFile } from './models';

/** Preview images are scaled to at most this many pixels a side ("small" previews). */
const PREVIEW_MAX_SIDE = 256;

export interface ExecuteHooks {
  signal: AbortSignal;
  onProgress?: (p: JobProgress) => void;
  onPreview?: (p: JobPreview) => void;
}

async function encodePreview(image: GeneratedImage, format: 'png' | 'webp'): Promise<Buffer> {
  return format === 'webp' ? image.toWebP({ quality: 70, parameters: false }) : image.toPNG({ compressionLevel: 3, parameters: false });
}

/**
 * Takes the server's folders out of an error message (the engine names files by their paths: a LoRA, an
 * embedding, the model): clients see file names only. Mutates and returns `err` (its class and code stay).
 */
export function withoutServerPaths(err: unknown, pool: ModelPool): unknown {
  if (!(err instanceof Error) || typeof err.message !== 'string') return err;
  const dirs = new Set<string>();
  for (const d of [pool.adapterDirs.loraDir, pool.adapterDirs.embeddingDir, pool.adapterDirs.controlNetDir]) if (d) dirs.add(d);
  for (const e of pool.entries) dirs.add(path.dirname(e.file));
  let m = err.message;
  // longest first, so a folder inside another one is replaced whole
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    if (d === '/' || d === '.') continue;
    m = m.split(`${d}${path.sep}`).join('').split(d).join('<server folder>');
  }
  if (m !== err.message) {
    try {
      err.message = m;
    } catch {
      // a frozen error keeps its message
    }
  }
  return err;
}

/** Runs `req` on model `name`; rejects with AbortError when `signal` aborts. */
export async function executeJob(pool: ModelPool, name: string, req: JobRequest, hooks: ExecuteHooks): Promise<JobResult> {
  try {
    return await runJob(pool, name, req, hooks);
  } catch (err) {
    throw withoutServerPaths(err, pool);
  }
}

async function runJob(pool: ModelPool, name: string, req: JobRequest, hooks: ExecuteHooks): Promise<JobResult> {
  const o = req.options;
  hooks.onProgress?.({ phase: 'load', step: 0, steps: 1, image: 0, images: o.batchCount, fraction: 0, etaMs: null });
  const { model, release } = await pool.acquire(name, hooks.signal);
  try {
    let encoding = false; // one preview encode at a time; previews that arrive meanwhile are skipped
    const wantPreview = req.previewEvery > 0 && hooks.onPreview !== undefined;
    // resolved options hold '' for unset folders, which generate() refuses: the pool's folders (if any) replace them
    const { loraDir: _ld, embeddingDir: _ed, ...gen } = o;
    const { loraDir, embeddingDir } = pool.adapterDirs;
    let controlNet: GenerateOptions['controlNet'];
    if (req.control) {
      const c = req.control;
      const file = controlNetFile(pool.adapterDirs.controlNetDir, c.model);
      if (!file) {
        // (a queue worker without the folder or the file: the job fails naming what is missing)
        throw new InvalidOptionError('controlNet.model', `ControlNet ${JSON.stringify(c.model)} is not in this worker's ControlNet folder (${pool.adapterDirs.controlNetDir ? 'start every worker with the same --control-net-dir files' : 'start it with --control-net-dir DIR'})`);
      }
      controlNet = { model: file, image: decodeBase64Image(c.image, 'controlNet.image'), strength: c.strength, start: c.start, end: c.end };
    }
    const result = await model.generate({ ...gen, ...engineImages(req), ...(loraDir ? { loraDir } : {}), ...(embeddingDir ? { embeddingDir } : {}), ...(controlNet ? { controlNet } : {}) }, {
      signal: hooks.signal,
      onProgress: hooks.onProgress
        ? (e) => hooks.onProgress!({ phase: e.phase, step: e.step, steps: e.steps, image: e.image, images: e.images, fraction: fractionOf(e), etaMs: e.etaMs ?? null })
        : undefined,
      onPreview: wantPreview
        ? (e) => {
            if (encoding) return;
            encoding = true;
            let img = e.image;
            void (async () => {
              try {
                if (Math.max(img.width, img.height) > PREVIEW_MAX_SIDE) img = await downscale(img);
                const data = await encodePreview(img, req.previewFormat);
                if (!hooks.signal.aborted) hooks.onPreview!({ step: e.step, mime: req.previewFormat === 'webp' ? 'image/webp' : 'image/png', data });
              } catch {
                // a preview that cannot be encoded is skipped; the job goes on
              } finally {
                encoding = false;
              }
            })();
          }
        : undefined,
      previewEvery: wantPreview ? req.previewEvery : undefined,
      previewMethod: wantPreview ? req.previewMethod ?? 'latent' : undefined,
    });
    const images = await Promise.all(
      result.images.map(async (img) => ({ png: await img.toPNG(), seed: img.seed, infotext: img.infotext(await model.hash().catch(() => undefined)) ?? '' })),
    );
    const { initImage: _i, mask: _m, loraDir: _l, embeddingDir: _e, controlNet: cn, ...parameters } = result.parameters; // no server paths to clients
    const control = cn && req.control ? { controlNet: { model: req.control.model, strength: cn.strength, start: cn.start, end: cn.end } } : {};
    return { images, parameters: { ...parameters, ...control, model: name }, elapsedMs: result.elapsedMs };
  } finally {
    release();
  }
}

async function downscale(img: GeneratedImage): Promise<GeneratedImage> {
  const { default: sharp } = await import('sharp');
  const scale = PREVIEW_MAX_SIDE / Math.max(img.width, img.height);
  const w = Math.max(1, Math.round(img.width * scale));
  const h = Math.max(1, Math.round(img.height * scale));
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels as 3 } }).resize(w, h).raw().toBuffer();
  const { GeneratedImage: GI } = await import('../image');
  return new GI({ width: w, height: h, channels: img.channels, data, seed: img.seed });
}
