/**
 * Typed errors thrown (or rejected with) by every sdnode function.
 *
 * Every error is an {@link SdnodeError} with a stable string {@link SdnodeError.code}; the subclasses let callers
 * `catch` by kind with `instanceof`. Engine errors keep the engine's code (the names of `sdn::ErrorCode` in
 * native/include/sdn/error.h).
 * @packageDocumentation
 */

/**
 * Stable error codes. The first nine are the engine's `sdn::ErrorCode` names; `BindingLoad` means the native addon
 * could not be loaded.
 */
export type SdnodeErrorCode =
  | 'InvalidArgument'
  | 'NotFound'
  | 'InvalidFile'
  | 'Unsupported'
  | 'OutOfMemory'
  | 'Aborted'
  | 'Disposed'
  | 'Io'
  | 'Internal'
  | 'BindingLoad';

const ENGINE_CODES: ReadonlySet<string> = new Set([
  'InvalidArgument',
  'NotFound',
  'InvalidFile',
  'Unsupported',
  'OutOfMemory',
  'Aborted',
  'Disposed',
  'Io',
  'Internal',
]);

/** Base class of every error sdnode throws. */
export class SdnodeError extends Error {
  /** Stable machine-readable code (see {@link SdnodeErrorCode}). */
  readonly code: SdnodeErrorCode;

  /**
   * @param message - what went wrong and what to do about it
   * @param code - the stable code
   * @param options - `cause`: the underlying error, if any
   */
  constructor(message: string, code: SdnodeErrorCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SdnodeError';
    this.code = code;
  }
}

/** A model file, folder or part could not be opened or read (missing, truncated, corrupt, I/O failure). */
export class ModelLoadError extends SdnodeError {
  constructor(message: string, code: SdnodeErrorCode = 'InvalidFile', options?: { cause?: unknown }) {
    super(message, code, options);
    this.name = 'ModelLoadError';
  }
}

/**
 * An option has the wrong type or value. Thrown before any native work starts; the message reads
 * `expected X for P but received V (type)`.
 */
export class InvalidOptionError extends SdnodeError {
  /** Name of the offending option (dotted for nested ones, '' when the engine did not say). */
  readonly option: string;
  constructor(message: string, option = '', options?: { cause?: unknown }) {
    super(message, 'InvalidArgument', options);
    this.name = 'InvalidOptionError';
    this.option = option;
  }
}

/** The operation was cancelled through its `AbortSignal` (name `'AbortError'`, like the DOM's). */
export class AbortError extends SdnodeError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, 'Aborted', options);
    this.name = 'AbortError';
  }
}

/** The model was disposed before or while this call waited. */
export class DisposedError extends SdnodeError {
  constructor(message = 'The model has been disposed', options?: { cause?: unknown }) {
    super(message, 'Disposed', options);
    this.name = 'DisposedError';
  }
}

/** The engine could not allocate what the call needs. Try a smaller size or batch, or a quantized weight type. */
export class InsufficientMemoryError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'OutOfMemory', options);
    this.name = 'InsufficientMemoryError';
  }
}

/** The model family, data type or feature is recognised but not supported by this engine (yet). */
export class UnsupportedError extends SdnodeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'Unsupported', options);
    this.name = 'UnsupportedError';
  }
}

/** No native binary could be loaded. {@link NativeBindingError.attempts} lists every path tried and why it failed. */
export class NativeBindingError extends SdnodeError {
  /** One line per attempt: where it looked and the error it got. */
  readonly attempts: readonly string[];
  constructor(message: string, attempts: readonly string[], options?: { cause?: unknown }) {
    super(message, 'BindingLoad', options);
    this.name = 'NativeBindingError';
    this.attempts = attempts;
  }
}

/** Where a native error came from; decides e.g. whether NotFound becomes a {@link ModelLoadError}. */
export type NativeContext = 'load' | 'generate' | 'convert' | 'inspect' | 'dispose';

const ENGINE_OPTION_NAMES: Record<string, string> = {
  prompt: 'prompt',
  negative_prompt: 'negativePrompt',
  width: 'width',
  height: 'height',
  steps: 'steps',
  cfg_scale: 'cfgScale',
  sampler: 'sampler',
  scheduler: 'scheduler',
  seed: 'seed',
  rng: 'rng',
  clip_skip: 'clipSkip',
  batch_count: 'batchCount',
  preview_every: 'previewEvery',
  weight_type: 'weightType',
  tokenizer_path: 'tokenizerPath',
  vram_budget: 'vramBudget',
  vae_type: 'vaeType',
  threads: 'threads',
  init_image: 'initImage',
  mask: 'mask',
  strength: 'strength',
  decoder: 'decoder',
  preview_method: 'previewMethod',
  taesd_path: 'taesdPath',
};

/**
 * An engine message in JavaScript terms: the engine's parameter names (`cfg_scale`, `tokenizer_path`, ...) become
 * the option names of this API (`cfgScale`, `tokenizerPath`, ...).
 * @internal
 */
export function engineMessageInJsTerms(message: string): string {
  return message.replace(/\b[a-z]+(?:_[a-z]+)+\b/g, (w) => ENGINE_OPTION_NAMES[w] ?? w);
}

/** The API option an engine InvalidArgument message is about ("width must be ..." -> "width"), or ''. */
function engineOptionName(message: string): string {
  const m = /^([a-z_]+)\b/.exec(message);
  return (m && ENGINE_OPTION_NAMES[m[1]]) || '';
}

/**
 * Turns an error from the native addon (an Error whose `code` is an engine code name) into the matching typed
 * error. `site` (an Error created at the public call) supplies a JavaScript stack that points at the caller.
 * @internal
 */
export function fromNative(err: unknown, context: NativeContext, site?: Error): Error {
  if (err instanceof SdnodeError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' && ENGINE_CODES.has(e.code) ? (e.code as SdnodeErrorCode) : undefined;
  const rawMessage = typeof e?.message === 'string' ? e.message : String(err);
  if (code === undefined) return err instanceof Error ? err : new SdnodeError(rawMessage, 'Internal');
  const message = engineMessageInJsTerms(rawMessage);
  let out: SdnodeError;
  switch (code) {
    case 'Aborted':
      out = new AbortError(`The operation was aborted (${message})`, { cause: err });
      break;
    case 'Disposed':
      out = new DisposedError(message, { cause: err });
      break;
    case 'OutOfMemory':
      out = new InsufficientMemoryError(message, { cause: err });
      break;
    case 'Unsupported':
      out = new UnsupportedError(message, { cause: err });
      break;
    case 'InvalidArgument':
      out = new InvalidOptionError(message, engineOptionName(rawMessage), { cause: err });
      break;
    case 'NotFound':
    case 'InvalidFile':
    case 'Io':
      out = context === 'load' ? new ModelLoadError(message, code, { cause: err }) : new SdnodeError(message, code, { cause: err });
      break;
    default:
      out = new SdnodeError(message, code, { cause: err });
  }
  if (site?.stack) {
    const lines = site.stack.split('\n').slice(1);
    out.stack = `${out.name}: ${out.message}\n${lines.join('\n')}`;
  }
  return out;
}
