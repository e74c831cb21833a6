/**
 * Option types and their validation. Everything is checked here, in TypeScript, before any native work starts;
 * a bad value throws {@link InvalidOptionError} with the message `expected X for P but received V (type)`.
 * @packageDocumentation
 */
import * as os from 'os';
import type { ControlNetOption, LoraOption, ResolvedControlNet } from './adapters';
import { InvalidOptionError } from './errors';

/**
 * Samplers the engine implements (sd.cpp names). A1111 names: Euler, Euler a, Heun, DPM2, DPM++ 2M, DPM++ 2S a, LCM,
 * DDIM. `ddim` and `ddim_trailing` are the same DDIM (eta 0) in sigma form; `ipndm` is iPNDM (Adams-Bashforth up to
 * order 4); `tcd` is Trajectory Consistency Distillation sampling (gamma 0.3; use it with the `lcm` scheduler).
 */
export type Sampler =
  | 'euler'
  | 'euler_a'
  | 'heun'
  | 'dpm2'
  | 'dpm++2m'
  | 'dpm++2s_a'
  | 'lcm'
  | 'ddim'
  | 'ddim_trailing'
  | 'ipndm'
  | 'tcd';
/**
 * Sigma schedules: `discrete` (A1111 "Automatic"/"Normal" for most samplers), `karras`, `exponential`, `simple` and
 * `sgm_uniform` (trailing timesteps, for Turbo/Lightning/Hyper models), `lcm` (LCM/TCD timesteps), `ays` (Align Your
 * Steps: NVIDIA's SD1.5/SDXL tables; SD 2.x uses the SD1.5 one).
 */
export type Scheduler = 'discrete' | 'karras' | 'exponential' | 'simple' | 'sgm_uniform' | 'lcm' | 'ays';
/** Noise generator: `cuda`/`philox` reproduce A1111/sd.cpp GPU seeds; `cpu` (MT19937) reproduces ComfyUI's. */
export type Rng = 'cuda' | 'philox' | 'cpu';
/** Weight storage types for conversion and quantize-on-load. */
export type WeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q4_K' | 'q5_K' | 'q6_K';

/** All accepted sampler names. */
export const SAMPLERS: readonly Sampler[] = [
  'euler',
  'euler_a',
  'heun',
  'dpm2',
  'dpm++2m',
  'dpm++2s_a',
  'lcm',
  'ddim',
  'ddim_trailing',
  'ipndm',
  'tcd',
];
/** All accepted scheduler names. */
export const SCHEDULERS: readonly Scheduler[] = ['discrete', 'karras', 'exponential', 'simple', 'sgm_uniform', 'lcm', 'ays'];
/** Prediction types a model can be forced to. */
export type Prediction = 'eps' | 'v';
/** All accepted prediction types. */
export const PREDICTIONS: readonly Prediction[] = ['eps', 'v'];
/** All accepted RNG names. */
export const RNGS: readonly Rng[] = ['cuda', 'philox', 'cpu'];
/** All accepted weight types. */
export const WEIGHT_TYPES: readonly WeightType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_K', 'q5_K', 'q6_K'];

/** Which autoencoder turns the final latent into pixels: the model's VAE, or TAESD (needs `taesdPath` at load). */
export type Decoder = 'vae' | 'taesd';
/** How previews are made: `latent` (a linear latent-to-RGB map, at 1/8 size, almost free) or `taesd` (full size). */
export type PreviewMethod = 'latent' | 'taesd';
/** All accepted decoders. */
export const DECODERS: readonly Decoder[] = ['vae', 'taesd'];
/** All accepted preview methods. */
export const PREVIEW_METHODS: readonly PreviewMethod[] = ['latent', 'taesd'];

/** Pixels given directly: `width * height * channels` bytes, row-major (a {@link GeneratedImage} is one). */
export interface RawImageInput {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). */
  channels: number;
}
/**
 * An input image: a file path, an encoded image in memory (`Buffer`/`Uint8Array`/`ArrayBuffer`: PNG, JPEG, WebP,
 * GIF, AVIF, TIFF, SVG, ... anything sharp reads), or raw pixels ({@link RawImageInput}, e.g. a generated image).
 */
export type ImageInput = string | Uint8Array | ArrayBuffer | RawImageInput;

/** Image side limits (pixels). Sides must also be multiples of 8 (the VAE's scale). */
export const MIN_SIZE = 64;
export const MAX_SIZE = 2048; // the engine's limit (native/pipeline/params.cpp)
/** Upper limits that catch mistakes (e.g. 20000 steps) rather than real constraints. */
export const MAX_STEPS = 1000;
export const MAX_CFG = 100;
export const MAX_CLIP_SKIP = 32; // the engine checks the model's real layer count (CLIP-L 12, ViT-H 24, bigG 32)
export const MAX_BATCH = 64;

/** What to generate. Only `prompt` is required. */
export interface GenerateOptions {
  /** What the image should show (A1111 emphasis syntax `(word:1.2)` and `BREAK` are understood by the engine). */
  prompt: string;
  /** What it should not show. Default `''`. */
  negativePrompt?: string;
  /**
   * Image width in pixels, 64 to 2048: a multiple of 8 here, and of what the model's U-Net allows (8 x 2^downsamples:
   * 64 for SD 1.x/2.x, 32 for SDXL; the engine says which). Default: the model's native size (SD 1.x 512, SD 2.x 768
   * for v-prediction models else 512, SDXL 1024).
   */
  width?: number;
  /** Image height in pixels (the same rule as `width`). Default: the model's native size. */
  height?: number;
  /** Denoising steps, 1 to 1000. Default 20. */
  steps?: number;
  /** Classifier-free guidance scale, 0 to 100 (1 disables the negative pass in effect). Default 7. */
  cfgScale?: number;
  /** Sampler. Default `'euler_a'`. */
  sampler?: Sampler;
  /** Sigma schedule. Default `'discrete'`. */
  scheduler?: Scheduler;
  /** Seed: an integer from 0 to 2^53-1, or -1 / omitted for a random one (the seed used is in the result). */
  seed?: number;
  /** Noise generator. Default `'cuda'` (A1111/sd.cpp compatible seeds). */
  rng?: Rng;
  /**
   * CLIP layers to skip from the end: 1 = the last layer, 2 = the one before, ... (at most the encoder's layer count),
   * or 0 for the model's default: SD 1.x 1; SD 2.x and SDXL 2 (their penultimate layer, as they were trained).
   * Default 0.
   */
  clipSkip?: number;
  /** Number of images, 1 to 64, with seeds seed, seed+1, ... Default 1. */
  batchCount?: number;
  /**
   * img2img: the image to start from. It is converted to 8-bit RGB (an alpha channel is dropped, as
   * stable-diffusion.cpp does) and resized to exactly `width` x `height` by stretching (A1111's "Just resize", stable-diffusion.cpp's
   * rule; Lanczos-3), then encoded with the model's VAE.
   */
  initImage?: ImageInput;
  /**
   * Inpainting mask (needs `initImage`, same size as it before resizing): white = repaint, black = keep, grey =
   * partly. Converted to grey and resized like the init image. Works with inpainting checkpoints (9-channel
   * U-Net) and ordinary ones (the latent outside the mask is reset to the init image's after every step).
   */
  mask?: ImageInput;
  /** Gaussian blur of the mask (sigma in pixels, 0 to 64) before use; softens the seam. Default 0 (none). */
  maskBlur?: number;
  /**
   * Denoising strength with `initImage`, 0 to 1: the fraction of the `steps` schedule that runs (as
   * stable-diffusion.cpp: t = floor(steps x strength), minus one when that is `steps`; t + 1 steps run, starting
   * at that point of the schedule). 1 = the whole schedule. Default 0.75. Only allowed with `initImage`.
   */
  strength?: number;
  /** Decoder of the final image: `'vae'` (default) or `'taesd'` (fast, approximate; needs `taesdPath` at load). */
  decoder?: Decoder;
  /**
   * LoRAs to apply, in addition to `<lora:NAME:WEIGHT>` tags in the prompt. Several at once; switching between
   * generations re-merges only the weights they touch (the model is not reloaded). Default none.
   */
  loras?: LoraOption[];
  /** Folder where `<lora:NAME:WEIGHT>` prompt tags are looked up (`NAME.safetensors`, `.ckpt`, `.pt`). */
  loraDir?: string;
  /**
   * Folder of textual-inversion embeddings (A1111/ComfyUI `.pt` / `.safetensors`): a word of the prompt or negative
   * prompt equal to a file name (without extension) uses that embedding; `embedding:NAME` must name one. SD 1.x and
   * SD 2.x take one table (`emb_params` / `string_to_param`), SDXL takes `clip_l` + `clip_g`; a file for another
   * family rejects with `InvalidOptionError` naming it.
   */
  embeddingDir?: string;
  /** ControlNet guidance (the control image is used as given: preprocessors such as canny are the caller's). */
  controlNet?: ControlNetOption;
}

/** {@link GenerateOptions} with every default filled in and the seed resolved. */
export interface ResolvedGenerateOptions {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  sampler: Sampler;
  scheduler: Scheduler;
  seed: number;
  rng: Rng;
  clipSkip: number;
  batchCount: number;
  /** The init image as given (img2img/inpainting), or undefined. */
  initImage?: ImageInput;
  /** The mask as given, or undefined. */
  mask?: ImageInput;
  /** Mask blur sigma (0 = none). */
  maskBlur: number;
  /** Denoising strength (only with an init image). */
  strength?: number;
  decoder: Decoder;
  loras: Array<{ path: string; weight: number }>;
  loraDir: string;
  embeddingDir: string;
  controlNet?: ResolvedControlNet;
}

/** Defaults applied by {@link resolveGenerateOptions}. */
export const GENERATE_DEFAULTS: Readonly<Omit<ResolvedGenerateOptions, 'prompt' | 'seed'>> = Object.freeze({
  negativePrompt: '',
  width: 512,
  height: 512,
  steps: 20,
  cfgScale: 7,
  sampler: 'euler_a',
  scheduler: 'discrete',
  rng: 'cuda',
  clipSkip: 0,
  batchCount: 1,
  maskBlur: 0,
  decoder: 'vae',
  loras: [],
  loraDir: '',
  embeddingDir: '',
});

/** The native image size of a model family (and prediction type): the default width and height. */
export function defaultSizeFor(family: string, prediction = ''): number {
  if (family === 'sdxl') return 1024;
  if (family === 'sd2' && prediction === 'v') return 768;
  return 512;
}

/** Default denoising strength with an init image (A1111's and stable-diffusion.cpp's). */
export const DEFAULT_STRENGTH = 0.75;

/** A short, readable rendering of a received value and its type, for error messages. */
export function describeValue(v: unknown): string {
  let type: string = typeof v;
  let repr: string;
  if (v === null) {
    type = 'null';
    repr = 'null';
  } else if (Array.isArray(v)) {
    type = 'array';
    repr = safeJson(v);
  } else if (typeof v === 'string') {
    repr = JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  } else if (typeof v === 'bigint') {
    repr = `${v}n`;
  } else if (typeof v === 'function') {
    repr = `function ${v.name || '(anonymous)'}`;
  } else if (typeof v === 'symbol') {
    repr = v.toString();
  } else if (typeof v === 'object') {
    const ctor = (v as object).constructor?.name;
    repr = ctor && ctor !== 'Object' ? `[object ${ctor}]` : safeJson(v);
  } else {
    repr = String(v);
  }
  return `${repr} (${type})`;
}

function safeJson(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** Throws the standard InvalidOptionError: `expected <expected> for <param> but received <value> (<type>)`. */
export function invalid(param: string, expected: string, value: unknown): never {
  throw new InvalidOptionError(`expected ${expected} for ${param} but received ${describeValue(value)}`, param);
}

/** @internal */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** The candidate closest to `name` (edit distance at most 2, or a prefix either way), if any. @internal */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const a = name.toLowerCase();
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const b = c.toLowerCase();
    if (a.length >= 3 && (b.startsWith(a) || a.startsWith(b))) return c;
    const d = editDistance(a, b);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0];
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j];
      dp[j] = Math.min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      // transposition counts as one edit
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) dp[j] = Math.min(dp[j], prev);
      prev = tmp;
    }
  }
  return dp[b.length];
}

/**
 * Copies into `target` each value of `source` that `names` maps to (target key -> source key) and that is defined:
 * how the CLI (flags) and the A1111 server API (body fields) fill in {@link GenerateOptions} from their own names.
 * Returns `target`. @internal
 */
export function copyDefined<T extends object>(target: T, source: Record<string, unknown>, names: Partial<Record<keyof T & string, string>>): T {
  for (const [key, from] of Object.entries(names) as [string, string][]) {
    const v = source[from];
    if (v !== undefined) (target as Record<string, unknown>)[key] = v;
  }
  return target;
}

/** Rejects keys that are not options (catches typos such as `cfg` for `cfgScale`). @internal */
export function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(obj)) {
    if (allowed.includes(key)) continue;
    const near = closest(key, allowed);
    throw new InvalidOptionError(
      `expected one of ${allowed.join(', ')} for a key of ${where} but received ${describeValue(key)}` +
        (near ? ` (did you mean ${near}?)` : ''),
      key,
    );
  }
}

/** @internal */
export function integer(param: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalid(param, `an integer from ${min} to ${max}`, v);
  return v;
}

/** @internal */
export function finite(param: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) invalid(param, `a finite number from ${min} to ${max}`, v);
  return v;
}

/** @internal */
export function oneOf<T extends string>(param: string, v: unknown, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) invalid(param, `one of ${values.join(', ')}`, v);
  return v as T;
}

/** @internal */
export function string(param: string, v: unknown, { nonEmpty = false } = {}): string {
  if (typeof v !== 'string' || (nonEmpty && v.length === 0)) invalid(param, nonEmpty ? 'a non-empty string' : 'a string', v);
  if (v.includes('\0')) invalid(param, 'a string without NUL characters', v);
  return v;
}

/** @internal */
export function optionalFunction<F>(param: string, v: unknown): F | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'function') invalid(param, 'a function', v);
  return v as F;
}

/**
 * An `AbortSignal`, or an object with the same shape (`aborted`, `addEventListener` and `removeEventListener`), as
 * signals from other realms or polyfills are. Anything less is refused: clean-up needs `removeEventListener`.
 * @internal
 */
export function optionalSignal(param: string, v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (typeof AbortSignal === 'function' && v instanceof AbortSignal) return v;
  const s = v as AbortSignal | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.aborted !== 'boolean' ||
    typeof s.addEventListener !== 'function' ||
    typeof s.removeEventListener !== 'function'
  ) {
    invalid(param, 'an AbortSignal', v);
  }
  return s;
}

function size(param: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v % 8 !== 0 || v < MIN_SIZE || v > MAX_SIZE) {
    invalid(param, `an integer multiple of 8 from ${MIN_SIZE} to ${MAX_SIZE} (SD 1.x models need multiples of 64; \`sdnode info\` and ModelInfo.sizeMultiple give a model's rule)`, v);
  }
  return v;
}

/**
 * Checks width and height against a model's size rule (`ModelInfo.sizeMultiple`: 64 for SD 1.x). Throws
 * {@link InvalidOptionError} naming the option.
 * @internal
 */
export function checkSizeForModel(width: number, height: number, sizeMultiple: number, family: string): void {
  if (!(sizeMultiple > 8)) return; // unknown or no stricter than the general rule
  for (const [param, v] of [['width', width], ['height', height]] as const) {
    if (v % sizeMultiple !== 0) {
      const lo = Math.max(MIN_SIZE, Math.floor(v / sizeMultiple) * sizeMultiple);
      const hi = Math.min(MAX_SIZE, Math.ceil(v / sizeMultiple) * sizeMultiple);
      invalid(param, `a multiple of ${sizeMultiple} (the rule of this ${family} model; e.g. ${lo === hi ? lo : `${lo} or ${hi}`})`, v);
    }
  }
}

const GENERATE_KEYS = [
  'prompt',
  'negativePrompt',
  'width',
  'height',
  'steps',
  'cfgScale',
  'sampler',
  'scheduler',
  'seed',
  'rng',
  'clipSkip',
  'batchCount',
  'initImage',
  'mask',
  'maskBlur',
  'strength',
  'decoder',
  'loras',
  'loraDir',
  'embeddingDir',
  'controlNet',
] as const;

/** Checks the form of an image input (decoding happens later, asynchronously). @internal */
export function imageInput(param: string, v: unknown): ImageInput {
  const what = 'an image (a file path, a Buffer/Uint8Array/ArrayBuffer holding an encoded image, or { data, width, height, channels })';
  if (typeof v === 'string') {
    if (v.length === 0 || v.includes('\0')) invalid(param, what, v);
    return v;
  }
  if (v instanceof Uint8Array || v instanceof ArrayBuffer) {
    if (v.byteLength === 0) invalid(param, `${what}, not an empty buffer`, v);
    return v;
  }
  if (typeof v === 'object' && v !== null && 'data' in v && 'width' in v) {
    const r = v as RawImageInput;
    const okDims = Number.isInteger(r.width) && Number.isInteger(r.height) && r.width > 0 && r.height > 0 && r.width <= 16384 && r.height <= 16384;
    if (!(r.data instanceof Uint8Array) || !okDims || ![1, 2, 3, 4].includes(r.channels) || r.data.byteLength !== r.width * r.height * r.channels) {
      invalid(param, 'raw pixels { data: Uint8Array of width*height*channels bytes, width, height (1 to 16384), channels: 1-4 }', v);
    }
    return r;
  }
  return invalid(param, what, v);
}

/** A random seed in [0, 2^32), like A1111's. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x1_0000_0000);
}

/**
 * Validates generation options and fills in defaults. Throws {@link InvalidOptionError} on the first problem.
 * A missing or -1 seed becomes a random one here, so the result always reports the seed that was used.
 */
export function resolveGenerateOptions(options: unknown, defaultSize?: number): ResolvedGenerateOptions {
  if (!isPlainObject(options)) invalid('options', 'an object', options);
  const o = options;
  checkKeys(o, GENERATE_KEYS, 'generate options');
  const d = defaultSize ? { ...GENERATE_DEFAULTS, width: defaultSize, height: defaultSize } : GENERATE_DEFAULTS;
  const pick = <T>(key: string, def: T): unknown => (o[key] === undefined ? def : o[key]);
  const r: ResolvedGenerateOptions = {
    prompt: string('prompt', o.prompt),
    negativePrompt: string('negativePrompt', pick('negativePrompt', d.negativePrompt)),
    width: size('width', pick('width', d.width)),
    height: size('height', pick('height', d.height)),
    steps: integer('steps', pick('steps', d.steps), 1, MAX_STEPS),
    cfgScale: finite('cfgScale', pick('cfgScale', d.cfgScale), 0, MAX_CFG),
    sampler: oneOf('sampler', pick('sampler', d.sampler), SAMPLERS),
    scheduler: oneOf('scheduler', pick('scheduler', d.scheduler), SCHEDULERS),
    seed: 0,
    rng: oneOf('rng', pick('rng', d.rng), RNGS),
    clipSkip: integer('clipSkip', pick('clipSkip', d.clipSkip), 0, MAX_CLIP_SKIP),
    batchCount: integer('batchCount', pick('batchCount', d.batchCount), 1, MAX_BATCH),
    maskBlur: 0,
    decoder: 'vae',
    loras: [],
    loraDir: '',
    embeddingDir: '',
  };
  r.maskBlur = finite('maskBlur', pick('maskBlur', d.maskBlur), 0, 64);
  r.decoder = oneOf('decoder', pick('decoder', d.decoder), DECODERS);
  if (o.initImage !== undefined) {
    r.initImage = imageInput('initImage', o.initImage);
    r.strength = finite('strength', pick('strength', DEFAULT_STRENGTH), 0, 1);
  } else if (o.strength !== undefined) {
    invalid('strength', 'no strength without initImage (strength is the denoising strength of img2img)', o.strength);
  }
  if (o.mask !== undefined) {
    if (o.initImage === undefined) invalid('mask', 'no mask without initImage (give the image to repaint as initImage)', '<mask>');
    r.mask = imageInput('mask', o.mask);
  } else if (o.maskBlur !== undefined && o.maskBlur !== 0) {
    invalid('maskBlur', 'no maskBlur without mask', o.maskBlur);
  }
  if (o.loras !== undefined) {
    if (!Array.isArray(o.loras)) invalid('loras', 'an array of { path, weight? }', o.loras);
    if (o.loras.length > 64) invalid('loras', 'at most 64 entries', o.loras);
    r.loras = o.loras.map((l: unknown, i: number) => {
      if (!isPlainObject(l)) invalid(`loras[${i}]`, 'an object { path, weight? }', l);
      checkKeys(l, ['path', 'weight'], `loras[${i}]`);
      return {
        path: string(`loras[${i}].path`, l.path, { nonEmpty: true }),
        weight: l.weight === undefined ? 1 : finite(`loras[${i}].weight`, l.weight, -100, 100),
      };
    });
  } else {
    r.loras = [];
  }
  r.loraDir = o.loraDir === undefined ? '' : string('loraDir', o.loraDir, { nonEmpty: true });
  r.embeddingDir = o.embeddingDir === undefined ? '' : string('embeddingDir', o.embeddingDir, { nonEmpty: true });
  if (o.controlNet !== undefined) {
    const c = o.controlNet;
    if (!isPlainObject(c)) invalid('controlNet', 'an object { model, image, strength?, start?, end? }', c);
    checkKeys(c, ['model', 'image', 'strength', 'start', 'end'], 'controlNet');
    if (c.image === undefined) invalid('controlNet.image', 'an image (the control image: path, Buffer or raw pixels)', c.image);
    const image = imageInput('controlNet.image', c.image);
    const start = c.start === undefined ? 0 : finite('controlNet.start', c.start, 0, 1);
    const end = c.end === undefined ? 1 : finite('controlNet.end', c.end, 0, 1);
    if (end < start) invalid('controlNet.end', `a number >= controlNet.start (${start})`, end);
    r.controlNet = {
      model: string('controlNet.model', c.model, { nonEmpty: true }),
      image,
      strength: c.strength === undefined ? 1 : finite('controlNet.strength', c.strength, 0, 10),
      start,
      end,
    };
  }
  const seed = integer('seed', pick('seed', -1), -1, Number.MAX_SAFE_INTEGER - MAX_BATCH);
  r.seed = seed === -1 ? randomSeed() : seed;
  return r;
}

/** Where a model's weights are: one file, a diffusers folder, or separate parts. */
export type ModelSource = string | ModelParts;

/** A model given as separate files. */
export interface ModelParts {
  /**
   * A complete checkpoint (file or diffusers folder) whose components the other fields replace, e.g.
   * `{ file: 'sdxl.safetensors', vae: 'sdxl-vae-fp16-fix.safetensors' }`. Without it, `unet`, `vae` and
   * `textEncoder` are all required.
   */
  file?: string;
  /** UNet / diffusion model weights. */
  unet?: string;
  /** VAE weights. */
  vae?: string;
  /** Text encoder weights (SDXL: a file holding both encoders, or give them in `file`). */
  textEncoder?: string;
  /** Optional BPE merges file (`merges.txt`, uncompressed); otherwise embedded/nearby merges are used. */
  tokenizer?: string;
}

/** Progress of {@link loadModel}. */
export interface LoadProgressEvent {
  /** Fraction loaded, 0 to 1. */
  progress: number;
}

/**
 * Where a model runs: `'auto'` (the best usable GPU, else the CPU; the default), `'cpu'`, `'vulkan'` (the first
 * Vulkan device) or `'vulkan:N'`. {@link getSystemInfo} lists the devices.
 */
export type DeviceSpec = 'auto' | 'cpu' | 'vulkan' | `vulkan:${number}`;

/** Options of {@link loadModel}. */
export interface LoadOptions {
  /**
   * Device to run on (default `'auto'`). An explicit device that is missing or unusable rejects with
   * {@link UnsupportedError}; `'auto'` falls back to the CPU and says why in `model.device`.
   */
  device?: DeviceSpec;
  /**
   * Device memory for weights, in bytes or as a string such as `'6GB'` / `'512MiB'` (GPU devices; default no
   * limit), streaming area included; activations are separate. A quarter of it is a streaming area, the rest holds
   * weights resident in the order they are first used; weights that do not fit stay in host memory and are
   * streamed into the area when an operation uses them (the next ones prefetched), so every operation still runs
   * on the device. A single weight larger than 3/16 of the budget cannot be streamed: its operations run on the CPU.
   */
  vramBudget?: number | string;
  /**
   * The VAE in overlapping tiles (256-pixel tiles, 64 pixels of overlap, blended): the decode, and the encode of
   * `initImage` (img2img) and of inpainting's masked image. `'auto'` (default: on a GPU device when the whole pass
   * would not fit its memory; never on the CPU), `true` (when the image is larger than one tile) or `false`. Tiles
   * see only their part of the image, so a tiled result differs from a whole one (decode of golden case v2 in two
   * tiles: 47.7 dB PSNR; img2img case w1 encoded and decoded in 2x2 smaller tiles: 30.7 dB; measured in the tests).
   */
  vaeTiling?: boolean | 'auto';
  /** Run the text encoder on the CPU while the U-Net runs on the GPU (saves device memory). */
  textEncoderOnCpu?: boolean;
  /** Run the VAE on the CPU while the U-Net runs on the GPU (saves device memory). */
  vaeOnCpu?: boolean;
  /**
   * CPU threads for this model (0 or omitted: the process-wide pool, physical cores). At most the machine's hardware
   * threads (`os.availableParallelism()`): more only oversubscribes the cores and slows every thread down.
   */
  threads?: number;
  /** Convert or quantize weights while loading (e.g. `'q8_0'` halves memory of f16 weights). Default: as stored. */
  weightType?: WeightType;
  /** Explicit CLIP BPE merges file, overriding embedded or nearby ones. */
  tokenizerPath?: string;
  /**
   * Prediction type, overriding everything else: `'eps'` or `'v'`. Omitted: what the file declares (metadata or
   * a `v_pred` tensor); SD 1.x and SDXL default to eps; an SD 2.x file that declares nothing is probed (the U-Net
   * run once on constant inputs, v when mean(output - input) < -1, the rule of stable-diffusion.cpp and A1111).
   * `model.info.prediction` / `predictionSource` say what was used and why.
   */
  prediction?: Prediction;
  /**
   * A TAESD/TAESDXL file (`taesd_decoder.safetensors`, or diffusers AutoencoderTiny weights with decoder and
   * encoder) for `decoder: 'taesd'` and `previewMethod: 'taesd'`. Opened (and checked) at load time.
   */
  taesdPath?: string;
  /** Called as loading advances. */
  onProgress?: (event: LoadProgressEvent) => void;
  /** Aborts loading; the promise rejects with {@link AbortError}. */
  signal?: AbortSignal;
}

/** @internal */
export interface ResolvedLoadOptions {
  device: string;
  vramBudget: number;
  vaeTiling: 'auto' | 'on' | 'off';
  textEncoderOnCpu: boolean;
  vaeOnCpu: boolean;
  threads: number;
  weightType: string;
  tokenizerPath: string;
  prediction: string;
  taesdPath: string;
  onProgress?: (event: LoadProgressEvent) => void;
  signal?: AbortSignal;
}

/** Validates the model source. @internal */
export function resolveModelSource(
  source: unknown,
): string | { file: string; unet: string; vae: string; textEncoder: string; tokenizer: string } {
  if (typeof source === 'string') return string('pathOrParts', source, { nonEmpty: true });
  if (!isPlainObject(source))
    invalid('pathOrParts', 'a path string or an object { file?, unet, vae, textEncoder, tokenizer? }', source);
  checkKeys(source, ['file', 'unet', 'vae', 'textEncoder', 'tokenizer'], 'model parts');
  const file = source.file === undefined ? '' : string('file', source.file, { nonEmpty: true });
  const part = (key: 'unet' | 'vae' | 'textEncoder'): string =>
    file && source[key] === undefined ? '' : string(key, source[key], { nonEmpty: true });
  return {
    file,
    unet: part('unet'),
    vae: part('vae'),
    textEncoder: part('textEncoder'),
    tokenizer: source.tokenizer === undefined ? '' : string('tokenizer', source.tokenizer, { nonEmpty: true }),
  };
}

/**
 * The most `threads` a load accepts: the hardware threads available to this process (`os.availableParallelism()`).
 */
export function maxThreads(): number {
  const n = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, n);
}

/** Validates a device spec ('auto', 'cpu', 'vulkan', 'vulkan:N'). @internal */
export function deviceSpec(v: unknown): string {
  if (typeof v === 'string' && /^(auto|cpu|vulkan|vulkan:\d{1,4})$/.test(v)) return v;
  return invalid('device', "'auto', 'cpu', 'vulkan' or 'vulkan:N' (see getSystemInfo().devices / `sdnode system`)", v);
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** A byte count given as a number or a string with a unit ('6GB', '512MiB', '1.5 GiB'). @internal */
export function byteSize(name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(v);
    if (m) {
      const n = Math.round(parseFloat(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]);
      if (Number.isSafeInteger(n)) return n;
    }
  }
  return invalid(name, "a byte count: a non-negative integer or a string such as '6GB' or '512MiB'", v);
}

/** Validates load options. @internal */
export function resolveLoadOptions(options: unknown): ResolvedLoadOptions {
  if (options === undefined) options = {};
  if (!isPlainObject(options)) invalid('options', 'an object', options);
  const o = options;
  checkKeys(
    o,
    ['device', 'vramBudget', 'vaeTiling', 'textEncoderOnCpu', 'vaeOnCpu', 'threads', 'weightType', 'tokenizerPath', 'prediction', 'taesdPath', 'onProgress', 'signal'],
    'load options',
  );
  const flag = (name: string, v: unknown): boolean => (v === undefined ? false : typeof v === 'boolean' ? v : invalid(name, 'a boolean', v));
  return {
    device: o.device === undefined ? 'auto' : deviceSpec(o.device),
    vramBudget: o.vramBudget === undefined ? 0 : byteSize('vramBudget', o.vramBudget),
    vaeTiling:
      o.vaeTiling === undefined || o.vaeTiling === 'auto'
        ? 'auto'
        : o.vaeTiling === true
          ? 'on'
          : o.vaeTiling === false
            ? 'off'
            : invalid('vaeTiling', "true, false or 'auto'", o.vaeTiling),
    textEncoderOnCpu: flag('textEncoderOnCpu', o.textEncoderOnCpu),
    vaeOnCpu: flag('vaeOnCpu', o.vaeOnCpu),
    threads: o.threads === undefined ? 0 : integer('threads', o.threads, 0, maxThreads()),
    weightType: o.weightType === undefined ? '' : oneOf('weightType', o.weightType, WEIGHT_TYPES),
    tokenizerPath: o.tokenizerPath === undefined ? '' : string('tokenizerPath', o.tokenizerPath, { nonEmpty: true }),
    prediction: o.prediction === undefined ? '' : oneOf('prediction', o.prediction, PREDICTIONS),
    taesdPath: o.taesdPath === undefined ? '' : string('taesdPath', o.taesdPath, { nonEmpty: true }),
    onProgress: optionalFunction('onProgress', o.onProgress),
    signal: optionalSignal('signal', o.signal),
  };
}
