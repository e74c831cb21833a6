/**
 * Request bodies of the three APIs (our job API, A1111's txt2img, OpenAI's image generations): their JSON schemas
 * (validated by Fastify/Ajv before a handler runs) and their mapping onto {@link GenerateOptions}.
 * @internal
 * @packageDocumentation
 */
import { InvalidOptionError } from '../errors';
import { MAX_CLIP_SKIP, MAX_SIZE, MIN_SIZE, RNGS, SAMPLERS, SCHEDULERS, copyDefined, resolveGenerateOptions, type GenerateOptions, type ResolvedGenerateOptions, type Sampler, type Scheduler } from '../options';
import { HttpError, limitError, type ServerLimits } from './limits';

/** A validated generation request: what to generate, on which model, and how previews are sent. */
export interface JobRequest {
  /** Model name ('' = the server's default model). Never a path. */
  model: string;
  options: ResolvedGenerateOptions;
  /** Previews every N sampling steps (0: none). */
  previewEvery: number;
  /** Preview encoding. */
  previewFormat: 'png' | 'webp';
  /** How previews are made (`'taesd'` needs the server started with `--taesd`); absent in older queued jobs. */
  previewMethod?: 'latent' | 'taesd';
  /** Which API the job came from (A1111's /progress and /interrupt only see 'a1111' jobs first). */
  api: 'jobs' | 'a1111' | 'openai';
  /**
   * img2img/inpainting inputs as base64 (kept encoded so a queued job stays plain JSON); `options` then holds
   * strength/maskBlur and the engine gets the decoded bytes. Never a path.
   */
  images?: { init: string; mask?: string };
  /**
   * ControlNet: a name in the server's ControlNet folder (resolved to a file by whoever runs the job, never sent
   * as a path), the control image as base64 (used as given: preprocessing is the client's) and the settings.
   */
  control?: { model: string; image: string; strength: number; start: number; end: number };
}

/** A ControlNet name as clients give it: a file name in the server's folder, no paths; A1111's " [hash]" dropped. */
export function controlNetName(v: string, param: string): string {
  const name = v.replace(/\s*\[[0-9a-f]{8,64}\]$/i, '').trim();
  if (name === '' || /[\\/\0]/.test(name) || name === '.' || name === '..') {
    throw new HttpError(400, 'invalid_value', `${param}: a ControlNet is named by its file name in the server's ControlNet folder, without extension (GET /controlnet/model_list)`, { param });
  }
  return name;
}

/** The encoded image of a base64 string or data URL, or a 400 naming the field. */
export function decodeBase64Image(v: string, param: string): Buffer {
  const b64 = v.replace(/^data:[a-z0-9.+/-]+;base64,/i, '').replace(/\s+/g, '');
  const buf = /^[A-Za-z0-9+/]*={0,2}$/.test(b64) && b64.length > 0 ? Buffer.from(b64, 'base64') : undefined;
  if (!buf || buf.length === 0) throw new HttpError(400, 'invalid_value', `${param} must be a base64-encoded image (PNG, JPEG, WebP, ...) or a data: URL`, { param });
  return buf;
}

/**
 * Checks that the request's images decode (sharp reads their headers) and that the generation options accept them;
 * a 400 naming the field otherwise. Async: decoding happens off the event loop.
 */
export async function checkImages(req: JobRequest, names: { init: string; mask: string; control: string }): Promise<void> {
  if (!req.images && !req.control) return;
  const { default: sharp } = await import('sharp');
  const check = async (b64: string, param: string): Promise<void> => {
    const buf = decodeBase64Image(b64, param);
    const meta = await sharp(buf).metadata().catch(() => undefined);
    if (!meta?.width || !meta.height) throw new HttpError(400, 'invalid_value', `${param} is not an image that can be decoded (PNG, JPEG, WebP, ...)`, { param });
    if (meta.width > 16384 || meta.height > 16384) throw new HttpError(400, 'invalid_value', `${param} is ${meta.width}x${meta.height}; at most 16384 pixels a side`, { param });
  };
  if (req.images) await check(req.images.init, names.init);
  if (req.images?.mask !== undefined) await check(req.images.mask, names.mask);
  if (req.control) await check(req.control.image, names.control);
}

/** The request's images as engine inputs (bytes, never paths). */
export function engineImages(req: JobRequest): { initImage?: Buffer; mask?: Buffer } {
  if (!req.images) return {};
  const out: { initImage?: Buffer; mask?: Buffer } = { initImage: decodeBase64Image(req.images.init, 'initImage') };
  if (req.images.mask !== undefined) out.mask = decodeBase64Image(req.images.mask, 'mask');
  return out;
}

/** A1111 sampler labels (as in its UI and /sdapi/v1/samplers) -> engine names. */
export const A1111_SAMPLERS: ReadonlyArray<{ name: string; sampler: Sampler; aliases: string[] }> = [
  { name: 'Euler a', sampler: 'euler_a', aliases: ['k_euler_a', 'euler_a', 'euler_ancestral'] },
  { name: 'Euler', sampler: 'euler', aliases: ['k_euler', 'euler'] },
  { name: 'Heun', sampler: 'heun', aliases: ['k_heun', 'heun'] },
  { name: 'DPM2', sampler: 'dpm2', aliases: ['k_dpm_2', 'dpm2'] },
  { name: 'DPM++ 2S a', sampler: 'dpm++2s_a', aliases: ['k_dpmpp_2s_a', 'dpm++2s_a', 'dpmpp_2s_ancestral'] },
  { name: 'DPM++ 2M', sampler: 'dpm++2m', aliases: ['k_dpmpp_2m', 'dpm++2m', 'dpmpp_2m'] },
  { name: 'LCM', sampler: 'lcm', aliases: ['k_lcm', 'lcm'] },
  { name: 'DDIM', sampler: 'ddim', aliases: ['ddim'] },
  { name: 'DDIM Trailing', sampler: 'ddim_trailing', aliases: ['ddim_trailing'] },
  { name: 'iPNDM', sampler: 'ipndm', aliases: ['ipndm'] },
  { name: 'TCD', sampler: 'tcd', aliases: ['tcd'] },
];

/** A1111 scheduler names/labels -> engine names. */
export const A1111_SCHEDULERS: ReadonlyArray<{ name: string; label: string; scheduler: Scheduler; aliases: string[] }> = [
  { name: 'automatic', label: 'Automatic', scheduler: 'discrete', aliases: ['discrete', 'normal', 'Normal'] },
  { name: 'karras', label: 'Karras', scheduler: 'karras', aliases: [] },
  { name: 'exponential', label: 'Exponential', scheduler: 'exponential', aliases: [] },
  { name: 'simple', label: 'Simple', scheduler: 'simple', aliases: [] },
  { name: 'sgm_uniform', label: 'SGM Uniform', scheduler: 'sgm_uniform', aliases: [] },
  { name: 'align_your_steps', label: 'Align Your Steps', scheduler: 'ays', aliases: ['ays'] },
  { name: 'lcm', label: 'LCM', scheduler: 'lcm', aliases: [] },
];

/** Maps an A1111 sampler label (or alias, or engine name; old labels such as "DPM++ 2M Karras" carry a scheduler). */
export function a1111Sampler(label: string): { sampler: Sampler; scheduler?: Scheduler } {
  const l = label.trim().toLowerCase();
  for (const s of A1111_SAMPLERS) {
    if (s.name.toLowerCase() === l || s.aliases.includes(l)) return { sampler: s.sampler };
    for (const sch of A1111_SCHEDULERS) {
      if (sch.scheduler !== 'discrete' && l === `${s.name.toLowerCase()} ${sch.name}`) return { sampler: s.sampler, scheduler: sch.scheduler };
    }
  }
  throw new HttpError(400, 'invalid_value', `unknown sampler_name ${JSON.stringify(label)}; this server has: ${A1111_SAMPLERS.map((s) => s.name).join(', ')} (GET /sdapi/v1/samplers)`, { param: 'sampler_name' });
}

function a1111Scheduler(name: string): Scheduler {
  const l = name.trim().toLowerCase();
  for (const s of A1111_SCHEDULERS) {
    if (s.name === l || s.label.toLowerCase() === l || s.aliases.map((a) => a.toLowerCase()).includes(l)) return s.scheduler;
  }
  throw new HttpError(400, 'invalid_value', `unknown scheduler ${JSON.stringify(name)}; this server has: ${A1111_SCHEDULERS.map((s) => s.name).join(', ')} (GET /sdapi/v1/schedulers)`, { param: 'scheduler' });
}

const int = (min: number, max: number): Record<string, unknown> => ({ type: 'integer', minimum: min, maximum: max });
const sizeSchema = { type: 'integer', minimum: MIN_SIZE, maximum: MAX_SIZE, multipleOf: 8 };
const text = { type: 'string', maxLength: 100_000 };
const modelName = { type: 'string', maxLength: 512 };

/** Body of POST /v1/jobs (our names, as in {@link GenerateOptions}; unknown keys are rejected). */
export const JOB_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['prompt'],
  properties: {
    prompt: text,
    negativePrompt: text,
    width: sizeSchema,
    height: sizeSchema,
    steps: int(1, 1000),
    cfgScale: { type: 'number', minimum: 0, maximum: 100 },
    sampler: { type: 'string', enum: [...SAMPLERS] },
    scheduler: { type: 'string', enum: [...SCHEDULERS] },
    seed: int(-1, Number.MAX_SAFE_INTEGER - 64),
    rng: { type: 'string', enum: [...RNGS] },
    clipSkip: int(0, MAX_CLIP_SKIP),
    batchCount: int(1, 64),
    model: modelName,
    previewEvery: int(0, 1000),
    previewFormat: { type: 'string', enum: ['png', 'webp'] },
    previewMethod: { type: 'string', enum: ['latent', 'taesd'] },
    initImage: { type: 'string', minLength: 1 },
    mask: { type: 'string', minLength: 1 },
    strength: { type: 'number', minimum: 0, maximum: 1 },
    maskBlur: { type: 'number', minimum: 0, maximum: 64 },
    decoder: { type: 'string', enum: ['vae', 'taesd'] },
    controlNet: {
      type: 'object',
      additionalProperties: false,
      required: ['model', 'image'],
      properties: {
        model: modelName,
        image: { type: 'string', minLength: 1 },
        strength: { type: 'number', minimum: 0, maximum: 10 },
        start: { type: 'number', minimum: 0, maximum: 1 },
        end: { type: 'number', minimum: 0, maximum: 1 },
      },
    },
  },
} as const;

/** Body of POST /sdapi/v1/txt2img. A1111 clients send many more fields; the ones without meaning here are ignored. */
export const A1111_TXT2IMG_SCHEMA = {
  type: 'object',
  properties: {
    prompt: text,
    negative_prompt: text,
    width: sizeSchema,
    height: sizeSchema,
    steps: int(1, 1000),
    cfg_scale: { type: 'number', minimum: 0, maximum: 100 },
    sampler_name: { type: 'string', maxLength: 100 },
    sampler_index: { type: 'string', maxLength: 100 },
    scheduler: { type: 'string', maxLength: 100 },
    seed: { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER - 64 },
    batch_size: int(1, 64),
    n_iter: int(1, 64),
    clip_skip: int(0, MAX_CLIP_SKIP),
    enable_hr: { type: 'boolean' },
    override_settings: {
      type: 'object',
      properties: {
        sd_model_checkpoint: modelName,
        CLIP_stop_at_last_layers: int(0, MAX_CLIP_SKIP),
      },
    },
  },
} as const;

/** Body of POST /sdapi/v1/img2img: txt2img's fields plus the init image(s), mask and strength. */
export const A1111_IMG2IMG_SCHEMA = {
  type: 'object',
  required: ['init_images'],
  properties: {
    ...A1111_TXT2IMG_SCHEMA.properties,
    init_images: { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string', minLength: 1 } },
    mask: { anyOf: [{ type: 'string' }, { type: 'null' }] },
    denoising_strength: { type: 'number', minimum: 0, maximum: 1 },
    mask_blur: { type: 'number', minimum: 0, maximum: 64 },
  },
} as const;

/** Body of POST /v1/images/generations (OpenAI Images). */
export const OPENAI_SCHEMA = {
  type: 'object',
  required: ['prompt'],
  properties: {
    prompt: text,
    model: modelName,
    n: int(1, 64),
    size: { type: 'string', pattern: '^[0-9]{2,4}x[0-9]{2,4}$' },
    response_format: { type: 'string', enum: ['b64_json', 'url'] },
    quality: { type: 'string', maxLength: 32 },
    style: { type: 'string', maxLength: 32 },
    user: { type: 'string', maxLength: 256 },
  },
} as const;

/** Checks the server limits and the generation options; bad values become 400s naming the option or the limit. */
export function checkRequest(
  raw: GenerateOptions,
  limits: ServerLimits,
  names: Record<string, string> = {},
  images?: JobRequest['images'],
  control?: JobRequest['control'],
): ResolvedGenerateOptions {
  const n = (k: string): string => names[k] ?? k;
  let options: ResolvedGenerateOptions;
  try {
    const withImages: GenerateOptions = { ...raw };
    // bytes stand in for the images (decoded properly by checkImages): the library never sees a client string
    if (images) withImages.initImage = decodeBase64Image(images.init, n('initImage'));
    if (images?.mask !== undefined) withImages.mask = decodeBase64Image(images.mask, n('mask'));
    if (control) {
      // the settings are checked by the library's rules; the model name and image stay in the request
      withImages.controlNet = { model: control.model, image: decodeBase64Image(control.image, n('controlNet.image')), strength: control.strength, start: control.start, end: control.end };
    }
    options = resolveGenerateOptions(withImages);
    delete options.initImage;
    delete options.mask;
    delete options.controlNet;
  } catch (err) {
    if (err instanceof InvalidOptionError) {
      let m = err.message;
      for (const [k, v] of Object.entries(names)) m = m.replace(new RegExp(`\\bfor ${k}\\b`), `for ${v}`);
      throw new HttpError(400, 'invalid_value', m, { param: n(err.option) });
    }
    throw err;
  }
  for (const k of ['prompt', 'negativePrompt'] as const) {
    for (const m of options[k].matchAll(/<lora:([^>:]*)/g)) {
      const name = m[1].trim();
      // a name inside the LoRA folder: no absolute paths, no '..', no backslashes (the engine checks again)
      if (!/^[^/\\\0][^\\\0]*$/.test(name) || name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) {
        throw new HttpError(400, 'invalid_value', `<lora:${m[1]}> in ${n(k)}: a LoRA is named by its file name in the server's LoRA folder, without extension (GET /sdapi/v1/loras)`, { param: n(k) });
      }
    }
  }
  for (const k of ['width', 'height'] as const) {
    if (options[k] > limits.maxSize) throw limitError('maxSize', `${n(k)} ${options[k]} is over this server's maximum of ${limits.maxSize} pixels`, n(k));
  }
  if (options.steps > limits.maxSteps) throw limitError('maxSteps', `steps ${options.steps} is over this server's maximum of ${limits.maxSteps}`, n('steps'));
  if (options.batchCount > limits.maxBatch) {
    throw limitError('maxBatch', `${n('batchCount')} ${options.batchCount} is over this server's maximum of ${limits.maxBatch} images per job`, n('batchCount'));
  }
  return options;
}

type Body = Record<string, unknown>;

/** POST /v1/jobs body -> request. */
export function fromJobBody(b: Body, limits: ServerLimits): JobRequest {
  const { model, previewEvery, previewFormat, previewMethod, initImage, mask, controlNet, ...gen } = b;
  const images = typeof initImage === 'string' ? { init: initImage, ...(typeof mask === 'string' ? { mask } : {}) } : undefined;
  if (!images && mask !== undefined) throw new HttpError(400, 'invalid_value', 'mask needs initImage (the image to repaint)', { param: 'mask' });
  let control: JobRequest['control'];
  if (controlNet && typeof controlNet === 'object') {
    const c = controlNet as Body;
    control = { model: controlNetName(String(c.model), 'controlNet.model'), image: String(c.image), strength: (c.strength as number | undefined) ?? 1, start: (c.start as number | undefined) ?? 0, end: (c.end as number | undefined) ?? 1 };
  }
  return {
    model: typeof model === 'string' ? model : '',
    images,
    ...(control ? { control } : {}),
    options: checkRequest(gen as unknown as GenerateOptions, limits, {}, images, control),
    previewEvery: typeof previewEvery === 'number' ? previewEvery : 1,
    previewFormat: previewFormat === 'webp' ? 'webp' : 'png',
    previewMethod: previewMethod === 'taesd' ? 'taesd' : 'latent',
    api: 'jobs',
  };
}

const A1111_NAMES: Record<string, string> = {
  initImage: 'init_images',
  mask: 'mask',
  strength: 'denoising_strength',
  maskBlur: 'mask_blur',
  negativePrompt: 'negative_prompt',
  cfgScale: 'cfg_scale',
  batchCount: 'batch_size',
  clipSkip: 'clip_skip',
  sampler: 'sampler_name',
  'controlNet.image': 'alwayson_scripts.controlnet.args[0].image',
  'controlNet.strength': 'alwayson_scripts.controlnet.args[0].weight',
  'controlNet.start': 'alwayson_scripts.controlnet.args[0].guidance_start',
  'controlNet.end': 'alwayson_scripts.controlnet.args[0].guidance_end',
};

/** POST /sdapi/v1/txt2img (or, with `img2img`, /sdapi/v1/img2img) body -> request. */
export function fromA1111Body(b: Body, limits: ServerLimits, img2img = false): JobRequest {
  if (b.enable_hr === true) throw new HttpError(400, 'unsupported', 'enable_hr (hires fix) is not supported by this server; send enable_hr: false', { param: 'enable_hr' });
  const o: GenerateOptions = { prompt: typeof b.prompt === 'string' ? b.prompt : '' };
  copyDefined(o, b, { negativePrompt: 'negative_prompt', width: 'width', height: 'height', steps: 'steps', cfgScale: 'cfg_scale', seed: 'seed' });
  const overrides = (b.override_settings ?? {}) as Body;
  const clipSkip = b.clip_skip ?? overrides.CLIP_stop_at_last_layers;
  if (clipSkip !== undefined) o.clipSkip = clipSkip as number;
  const label = (b.sampler_name ?? b.sampler_index) as string | undefined;
  if (label !== undefined && label !== '') {
    const s = a1111Sampler(label);
    o.sampler = s.sampler;
    if (s.scheduler) o.scheduler = s.scheduler;
  }
  if (typeof b.scheduler === 'string' && b.scheduler !== '') o.scheduler = a1111Scheduler(b.scheduler);
  const batch = ((b.batch_size as number | undefined) ?? 1) * ((b.n_iter as number | undefined) ?? 1);
  if (batch !== 1) o.batchCount = batch;
  const model = typeof overrides.sd_model_checkpoint === 'string' ? overrides.sd_model_checkpoint : '';
  let images: JobRequest['images'];
  if (img2img && Array.isArray(b.init_images)) {
    images = { init: b.init_images[0] as string };
    if (typeof b.mask === 'string' && b.mask !== '') images.mask = b.mask;
    o.strength = typeof b.denoising_strength === 'number' ? b.denoising_strength : 0.75;
    if (images.mask !== undefined && typeof b.mask_blur === 'number') o.maskBlur = b.mask_blur;
  }
  const control = a1111ControlNet(b.alwayson_scripts);
  return { model, images, ...(control ? { control } : {}), options: checkRequest(o, limits, A1111_NAMES, images, control), previewEvery: 1, previewFormat: 'png', api: 'a1111' };
}

/**
 * The ControlNet unit of an A1111 request (the sd-webui-controlnet extension's `alwayson_scripts.controlnet.args`):
 * one enabled unit with `model` (its name, " [hash]" allowed), `image` or `input_image` (base64; or `{ image }`),
 * `weight`, `guidance_start`, `guidance_end`. Preprocessors are the client's: `module` must be absent or "none".
 */
function a1111ControlNet(scripts: unknown): JobRequest['control'] {
  const cn = scripts && typeof scripts === 'object' ? (scripts as Body).controlnet ?? (scripts as Body).ControlNet : undefined;
  if (cn === undefined) return undefined;
  const args = cn && typeof cn === 'object' ? (cn as Body).args : undefined;
  const param = 'alwayson_scripts.controlnet.args';
  if (!Array.isArray(args)) throw new HttpError(400, 'invalid_value', `${param} must be a list of ControlNet units`, { param });
  const units = args.filter((u): u is Body => !!u && typeof u === 'object' && (u as Body).enabled !== false && ((u as Body).model ?? 'None') !== 'None');
  if (units.length === 0) return undefined;
  if (units.length > 1) throw new HttpError(400, 'unsupported', `${param}: this server runs one ControlNet unit per job (${units.length} are enabled)`, { param });
  const u = units[0];
  const module = u.module ?? u.preprocessor;
  if (module !== undefined && module !== null && !['none', 'None', ''].includes(String(module))) {
    throw new HttpError(400, 'unsupported', `${param}[0].module ${JSON.stringify(module)}: this server runs no preprocessors; send the processed control image (an edge, depth or pose map) with module "none"`, { param: `${param}[0].module` });
  }
  const img = u.image ?? u.input_image;
  const image = typeof img === 'string' ? img : img && typeof img === 'object' && typeof (img as Body).image === 'string' ? ((img as Body).image as string) : undefined;
  if (!image) throw new HttpError(400, 'invalid_value', `${param}[0].image must be the control image as base64 (or a data: URL)`, { param: `${param}[0].image` });
  const num = (k: string, d: number): number => {
    const v = u[k];
    if (v === undefined || v === null) return d;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new HttpError(400, 'invalid_value', `${param}[0].${k} must be a number`, { param: `${param}[0].${k}` });
    return v;
  };
  if (typeof u.model !== 'string') throw new HttpError(400, 'invalid_value', `${param}[0].model must be a ControlNet name`, { param: `${param}[0].model` });
  return { model: controlNetName(u.model, `${param}[0].model`), image, strength: num('weight', 1), start: num('guidance_start', 0), end: num('guidance_end', 1) };
}

/** POST /v1/images/generations body -> request. OpenAI has no steps/seed: the server's defaults apply. */
export function fromOpenAIBody(b: Body, limits: ServerLimits): JobRequest {
  const o: GenerateOptions = { prompt: b.prompt as string };
  if (typeof b.size === 'string') {
    const [w, h] = b.size.split('x').map(Number);
    o.width = w;
    o.height = h;
  }
  if (typeof b.n === 'number') o.batchCount = b.n;
  const names = { width: 'size', height: 'size', batchCount: 'n' };
  return { model: typeof b.model === 'string' ? b.model : '', options: checkRequest(o, limits, names), previewEvery: 0, previewFormat: 'png', api: 'openai' };
}
