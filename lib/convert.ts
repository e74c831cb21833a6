/**
 * Model files: {@link inspect} (headers only) and {@link convert} (to GGUF, optionally quantized).
 * @packageDocumentation
 */
import * as path from 'path';
import { binding } from './binding';
import { AbortError, fromNative } from './errors';
import { fallbackMergesFor } from './tokenizer';
import type { ModelInfo } from './model';
import { checkKeys, invalid, isPlainObject, oneOf, optionalFunction, optionalSignal, string, WEIGHT_TYPES, type WeightType } from './options';

/** Progress of {@link convert}. */
export interface ConvertProgressEvent {
  /** Tensors written. */
  done: number;
  /** Tensors in total. */
  total: number;
}

/** Options of {@link convert}. */
export interface ConvertOptions {
  /** Type of the large weights. Default `'f16'`. */
  type?: WeightType;
  /** Type of the VAE weights (`first_stage_model.*`). Default `'f16'`. */
  vaeType?: WeightType;
  /**
   * CLIP BPE merges file to embed. Default: the model's own (embedded, or its diffusers folder), else the CLIP
   * merges shipped with sdnode; either way the GGUF written is self-contained.
   */
  tokenizerPath?: string;
  /** Write even when `output` does not end in `.gguf` (the file is GGUF whatever its name). Default false. */
  force?: boolean;
  /** Called as tensors are written (not for every tensor: at most one call waits for the event loop). */
  onProgress?: (event: ConvertProgressEvent) => void;
  /** Aborts: the promise rejects with {@link AbortError} and the partial output file is removed. */
  signal?: AbortSignal;
}

/** What {@link convert} resolves to. */
export interface ConvertResult {
  /** Input path as given. */
  input: string;
  /** Output path as given. */
  output: string;
  /** Tensors written. */
  tensorCount: number;
  /** Bytes of tensor data read. */
  bytesIn: number;
  /** Bytes of tensor data written. */
  bytesOut: number;
  /** Output tensor counts per data type. */
  tensorsByType: Record<string, number>;
  /** Wall-clock milliseconds. */
  elapsedMs: number;
}

/**
 * Reads what a model file or diffusers folder holds (family, variant, tensor counts by type, parameter count,
 * size) from its headers, without loading weights.
 */
export async function inspect(file: string): Promise<ModelInfo> {
  const site = new Error('inspect');
  string('path', file, { nonEmpty: true });
  try {
    return await binding().inspect(path.resolve(file));
  } catch (err) {
    throw fromNative(err, 'inspect', site);
  }
}

/**
 * Converts a model (single file, diffusers folder, or GGUF) to a GGUF file with stable-diffusion.cpp's tensor
 * names, quantizing large weights to `type`. Runs on a thread of its own.
 */
export async function convert(input: string, output: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const site = new Error('convert');
  string('input', input, { nonEmpty: true });
  string('output', output, { nonEmpty: true });
  if (!isPlainObject(options)) invalid('options', 'an object', options);
  checkKeys(options, ['type', 'vaeType', 'tokenizerPath', 'force', 'onProgress', 'signal'], 'convert options');
  const type = options.type === undefined ? 'f16' : oneOf('type', options.type, WEIGHT_TYPES);
  const vaeType = options.vaeType === undefined ? 'f16' : oneOf('vaeType', options.vaeType, WEIGHT_TYPES);
  const tokenizerPath = options.tokenizerPath === undefined ? '' : path.resolve(string('tokenizerPath', options.tokenizerPath, { nonEmpty: true }));
  const onProgress = optionalFunction<(e: ConvertProgressEvent) => void>('onProgress', options.onProgress);
  const signal = optionalSignal('signal', options.signal);
  if (path.resolve(input) === path.resolve(output)) invalid('output', 'a path different from input', output);
  if (options.force !== undefined && typeof options.force !== 'boolean') invalid('force', 'a boolean', options.force);
  if (path.extname(output).toLowerCase() !== '.gguf' && options.force !== true) {
    invalid('output', 'a file name ending in .gguf (convert writes GGUF; pass force: true / --force to use another name)', output);
  }
  if (signal?.aborted) throw new AbortError('The conversion was aborted', { cause: signal.reason });
  const fallbackMerges = await fallbackMergesFor(tokenizerPath);
  const b = binding();
  const handle = new b.AbortHandle();
  const onAbort = (): void => handle.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let userError: unknown;
  const started = performance.now();
  try {
    const s = await b.convert(
      path.resolve(input),
      path.resolve(output),
      { type, vaeType, tokenizerPath, fallbackMerges },
      onProgress
        ? (done, total) => {
            if (userError !== undefined) return;
            try {
              onProgress({ done, total });
            } catch (err) {
              userError = err;
              handle.abort();
            }
          }
        : null,
      handle,
    );
    return { input, output, ...s, elapsedMs: performance.now() - started };
  } catch (err) {
    if (userError !== undefined) throw userError;
    if (signal?.aborted && (err as { code?: string })?.code === 'Aborted') throw new AbortError('The conversion was aborted', { cause: signal.reason });
    throw fromNative(err, 'convert', site);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
