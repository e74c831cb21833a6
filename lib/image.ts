/**
 * Generated images and their encodings. This is the only module that imports sharp.
 *
 * PNGs carry the generation parameters in a `parameters` text chunk in AUTOMATIC1111's "infotext" format, so
 * A1111's "PNG Info" tab, ComfyUI loaders and civitai read them back; JPEG and WebP carry the same text in the
 * EXIF UserComment tag (where A1111 puts it).
 * @packageDocumentation
 */
import { constants as fsConstants, promises as fsp } from 'fs';
import { adapterInfotextFields } from './adapters';
import * as path from 'path';
import sharp from 'sharp';
import { InvalidOptionError, SdnodeError } from './errors';
import type { ImageInput, RawImageInput, ResolvedGenerateOptions, Sampler, Scheduler } from './options';

/** The model that made an image, as written into its metadata. */
export interface ImageModelInfo {
  /** Model name (file name without extension). */
  name: string;
  /** Resolves to A1111's short model hash (first 10 hex digits of the file's SHA-256), or undefined. */
  hash?: () => Promise<string | undefined>;
  /** The short hash if already known (no file reading), else undefined. */
  knownHash?: () => string | undefined;
}

/** Generation parameters of one image (its own seed). */
export interface ImageParameters extends ResolvedGenerateOptions {
  /** Model name and hash source, when known. */
  model?: ImageModelInfo;
}

/** PNG encoding options. */
export interface PngOptions {
  /** zlib level 0 to 9. Default 6. */
  compressionLevel?: number;
  /** Write the A1111 `parameters` chunk. Default true. */
  parameters?: boolean;
}

/** JPEG encoding options. */
export interface JpegOptions {
  /** 1 to 100. Default 90. */
  quality?: number;
  /** Write the parameters into EXIF UserComment. Default true. */
  parameters?: boolean;
}

/** WebP encoding options. */
export interface WebpOptions {
  /** 1 to 100. Default 90. */
  quality?: number;
  /** Lossless encoding. Default false. */
  lossless?: boolean;
  /** Write the parameters into EXIF UserComment. Default true. */
  parameters?: boolean;
}

const SAMPLER_LABELS: Record<Sampler, string> = {
  euler: 'Euler',
  euler_a: 'Euler a',
  heun: 'Heun',
  dpm2: 'DPM2',
  'dpm++2m': 'DPM++ 2M',
  'dpm++2s_a': 'DPM++ 2S a',
  lcm: 'LCM',
  ddim: 'DDIM',
  ddim_trailing: 'DDIM',
  ipndm: 'iPNDM',
  tcd: 'TCD',
};

const SCHEDULER_LABELS: Record<Scheduler, string | undefined> = {
  discrete: undefined, // A1111 "Automatic" for the samplers above
  karras: 'Karras',
  exponential: 'Exponential',
  simple: 'Simple',
  sgm_uniform: 'SGM Uniform',
  lcm: undefined,
  ays: 'Align Your Steps',
};

/**
 * Formats parameters as AUTOMATIC1111 infotext, e.g.
 * `prompt\nNegative prompt: ...\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: ..., Clip skip: 2`.
 */
export function formatInfotext(p: ImageParameters, modelHash?: string, extra: Array<[string, string]> = []): string {
  const fields: Array<[string, string | number]> = [
    ['Steps', p.steps],
    ['Sampler', SAMPLER_LABELS[p.sampler] ?? p.sampler],
  ];
  const sched = SCHEDULER_LABELS[p.scheduler];
  if (sched) fields.push(['Schedule type', sched]);
  fields.push(['CFG scale', p.cfgScale], ['Seed', p.seed], ['Size', `${p.width}x${p.height}`]);
  if (modelHash) fields.push(['Model hash', modelHash]);
  if (p.model?.name) fields.push(['Model', p.model.name]);
  if (p.initImage !== undefined && p.strength !== undefined) fields.push(['Denoising strength', p.strength]);
  if (p.clipSkip > 1) fields.push(['Clip skip', p.clipSkip]);
  if (p.mask !== undefined) fields.push(['Mask blur', p.maskBlur]);
  if (p.rng === 'cpu') fields.push(['RNG', 'CPU']);
  fields.push(...extra);
  fields.push(['Version', 'sdnode']);
  const quote = (v: string | number): string => {
    const s = String(v);
    return /[,:\n]/.test(s) ? JSON.stringify(s) : s; // as A1111 quote()
  };
  let text = p.prompt;
  if (p.negativePrompt) text += `\nNegative prompt: ${p.negativePrompt}`;
  text += `\n${fields.map(([k, v]) => `${k}: ${quote(v)}`).join(', ')}`;
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// PNG text chunks (sharp writes no arbitrary tEXt chunks, so we insert one into its output ourselves)
// ---------------------------------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG uses) of `data`. */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/**
 * Returns a copy of `png` with a text chunk inserted right after IHDR: `tEXt` when the text is Latin-1 (as PNG
 * requires), otherwise an uncompressed UTF-8 `iTXt` (what Pillow, and so A1111, does).
 */
export function insertPngText(png: Buffer, keyword: string, text: string): Buffer {
  if (png.length < 33 || !png.subarray(0, 8).equals(PNG_SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw new Error('insertPngText: not a PNG starting with IHDR');
  }
  const ihdrEnd = 8 + 12 + png.readUInt32BE(8);
  const key = Buffer.from(keyword, 'latin1');
  let type: string;
  let body: Buffer;
  if (isLatin1(text)) {
    type = 'tEXt';
    body = Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')]);
  } else {
    type = 'iTXt';
    // keyword NUL, compression flag 0, method 0, language tag "" NUL, translated keyword "" NUL, UTF-8 text
    body = Buffer.concat([key, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]);
  }
  const chunk = Buffer.alloc(12 + body.length);
  chunk.writeUInt32BE(body.length, 0);
  chunk.write(type, 4, 'latin1');
  body.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + body.length)), 8 + body.length);
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk, png.subarray(ihdrEnd)]);
}

function checkQuality(param: string, q: unknown): number {
  if (q === undefined) return 90;
  if (typeof q !== 'number' || !Number.isInteger(q) || q < 1 || q > 100) {
    throw new InvalidOptionError(`expected an integer from 1 to 100 for ${param} but received ${String(q)} (${typeof q})`, param);
  }
  return q;
}

/** An RGB image produced by the engine (a result or a preview). */
export class GeneratedImage {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** Channels per pixel (3: RGB). */
  readonly channels: number;
  /** Pixels, row-major, 8 bits per channel, `width * height * channels` bytes. */
  readonly data: Buffer;
  /** Seed of this image (for a batch: seed + index). */
  readonly seed: number;
  /** Parameters that made this image (absent for previews). */
  readonly parameters: ImageParameters | undefined;

  /** @internal */
  constructor(raw: { width: number; height: number; channels: number; data: Buffer; seed: number }, parameters?: ImageParameters) {
    this.width = raw.width;
    this.height = raw.height;
    this.channels = raw.channels;
    this.data = raw.data;
    this.seed = raw.seed;
    this.parameters = parameters;
  }

  /**
   * A1111 infotext for this image. Includes the model hash given, else the one already known (computed by an
   * encode or {@link Model.hash}, or remembered from an earlier run); it never reads the model file itself.
   */
  infotext(modelHash?: string): string | undefined {
    return this.parameters ? formatInfotext(this.parameters, modelHash ?? this.parameters.model?.knownHash?.()) : undefined;
  }

  private async metadataText(wanted: boolean | undefined): Promise<string | undefined> {
    if (wanted === false || !this.parameters) return undefined;
    let hash: string | undefined;
    try {
      hash = await this.parameters.model?.hash?.();
    } catch {
      hash = undefined; // the model file may be gone; the rest of the metadata is still worth writing
    }
    let extra: Array<[string, string]> = [];
    const ps = this.parameters;
    if (ps.loras?.length || ps.controlNet || /<lora:/.test(ps.prompt ?? '')) {
      extra = await adapterInfotextFields({ prompt: ps.prompt, loras: ps.loras ?? [], loraDir: ps.loraDir ?? '', controlNet: ps.controlNet });
    }
    return formatInfotext(this.parameters, hash, extra);
  }

  private sharp(): sharp.Sharp {
    return sharp(this.data, { raw: { width: this.width, height: this.height, channels: this.channels as 1 | 2 | 3 | 4 } });
  }

  /** Encodes as PNG with the A1111 `parameters` text chunk. */
  async toPNG(options: PngOptions = {}): Promise<Buffer> {
    const level = options.compressionLevel ?? 6;
    if (!Number.isInteger(level) || level < 0 || level > 9) {
      throw new InvalidOptionError(`expected an integer from 0 to 9 for compressionLevel but received ${String(level)} (${typeof level})`, 'compressionLevel');
    }
    const png = await this.sharp().png({ compressionLevel: level }).toBuffer();
    const text = await this.metadataText(options.parameters);
    return text === undefined ? png : insertPngText(png, 'parameters', text);
  }

  /** Encodes as JPEG (parameters in EXIF UserComment). */
  async toJPEG(options: JpegOptions = {}): Promise<Buffer> {
    const quality = checkQuality('quality', options.quality);
    let s = this.sharp().jpeg({ quality });
    const text = await this.metadataText(options.parameters);
    if (text !== undefined) s = s.withExif({ IFD2: { UserComment: text } });
    return s.toBuffer();
  }

  /** Encodes as WebP (parameters in EXIF UserComment). */
  async toWebP(options: WebpOptions = {}): Promise<Buffer> {
    const quality = checkQuality('quality', options.quality);
    let s = this.sharp().webp({ quality, lossless: options.lossless === true });
    const text = await this.metadataText(options.parameters);
    if (text !== undefined) s = s.withExif({ IFD2: { UserComment: text } });
    return s.toBuffer();
  }

  /**
   * Writes the image; the format follows the extension: .png, .jpg/.jpeg or .webp. Rejects with
   * {@link InvalidOptionError} (option `path`) for a bad extension, a missing folder or one that cannot be
   * written, and with an {@link SdnodeError} of code `Io` when writing fails; never with a bare `ENOENT`.
   */
  async save(file: string, options: PngOptions & JpegOptions & WebpOptions = {}): Promise<void> {
    await checkOutputPath(file, 'path');
    const ext = path.extname(file).toLowerCase();
    let buf: Buffer;
    if (ext === '.png') buf = await this.toPNG(options);
    else if (ext === '.jpg' || ext === '.jpeg') buf = await this.toJPEG(options);
    else buf = await this.toWebP(options);
    try {
      await fsp.writeFile(file, buf);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new SdnodeError(`could not write the image to ${file}: ${e.code ?? ''} ${e.message}`.replace('  ', ' '), 'Io', { cause: err });
    }
  }
}

/** Extensions {@link GeneratedImage.save} writes. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

/**
 * Checks that an image can be written at `file` before any work is done: a known extension, an existing folder
 * that this process may write to, and not an existing folder itself. Throws {@link InvalidOptionError} naming
 * `option` (`'path'` for save(), `'--output'` in the CLI) with what to do.
 * @internal
 */
export async function checkOutputPath(file: unknown, option: string): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) {
    throw new InvalidOptionError(`expected a file path for ${option} but received ${String(file)} (${typeof file})`, option);
  }
  const ext = path.extname(file).toLowerCase();
  if (!IMAGE_EXTENSIONS.includes(ext)) {
    throw new InvalidOptionError(
      `expected a path ending in .png, .jpg, .jpeg or .webp for ${option} but received ${JSON.stringify(file)} (string)`,
      option,
    );
  }
  const dir = path.dirname(path.resolve(file));
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st) throw new InvalidOptionError(`the folder of ${option} ${JSON.stringify(file)} does not exist (${dir}); create it first`, option);
  if (!st.isDirectory()) throw new InvalidOptionError(`the folder of ${option} ${JSON.stringify(file)} is not a folder (${dir})`, option);
  try {
    await fsp.access(dir, fsConstants.W_OK);
  } catch {
    throw new InvalidOptionError(`the folder of ${option} ${JSON.stringify(file)} is not writable by this process (${dir}); choose another folder`, option);
  }
  const target = await fsp.stat(file).catch(() => undefined);
  if (target?.isDirectory()) throw new InvalidOptionError(`${option} ${JSON.stringify(file)} is a folder; give a file name`, option);
  if (target) {
    try {
      await fsp.access(file, fsConstants.W_OK);
    } catch {
      throw new InvalidOptionError(`${option} ${JSON.stringify(file)} exists and is not writable by this process`, option);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Input images (img2img init image, inpainting mask)
// ---------------------------------------------------------------------------------------------------------------

/** Decoded pixels of an input image, at the size it was given. @internal */
export interface DecodedInput {
  width: number;
  height: number;
  sharp: sharp.Sharp;
}

function isRaw(v: ImageInput): v is RawImageInput {
  return typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof ArrayBuffer);
}

function describeSource(v: ImageInput): string {
  if (typeof v === 'string') return `file ${JSON.stringify(v)}`;
  if (isRaw(v)) return `raw ${v.width}x${v.height}x${v.channels} pixels`;
  return `a buffer of ${v.byteLength} bytes`;
}

/**
 * Opens an input image with sharp and reads its size. Rejects with InvalidOptionError naming `param` when the
 * file is missing or the data is not an image sharp can read. @internal
 */
export async function openInputImage(param: string, v: ImageInput): Promise<DecodedInput> {
  let s: sharp.Sharp;
  try {
    if (isRaw(v)) {
      s = sharp(Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength), {
        raw: { width: v.width, height: v.height, channels: v.channels as 1 | 2 | 3 | 4 },
      });
    } else if (typeof v === 'string') {
      await fsp.access(v).catch((err: NodeJS.ErrnoException) => {
        throw new InvalidOptionError(`${param}: cannot read ${JSON.stringify(v)} (${err.code ?? err.message}); give an existing image file`, param, { cause: err });
      });
      s = sharp(v, { failOn: 'error' });
    } else {
      s = sharp(v instanceof ArrayBuffer ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength), { failOn: 'error' });
    }
    const meta = await s.metadata();
    if (!meta.width || !meta.height) throw new Error('no image size');
    return { width: meta.width, height: meta.height, sharp: s };
  } catch (err) {
    if (err instanceof InvalidOptionError) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new InvalidOptionError(
      `${param}: ${describeSource(v)} is not an image sharp can read (${why}); give a PNG, JPEG, WebP, ... file or buffer, or raw pixels`,
      param,
      { cause: err },
    );
  }
}

/**
 * The pixels the engine takes: stretched to width x height (Lanczos-3), alpha dropped; RGB for the init image,
 * one grey channel for a mask (optionally blurred with a Gaussian of sigma `blur` after resizing). @internal
 */
export async function inputPixels(
  param: string,
  img: DecodedInput,
  width: number,
  height: number,
  kind: 'rgb' | 'grey',
  blur = 0,
): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  try {
    let s = img.sharp.clone().removeAlpha();
    if (img.width !== width || img.height !== height) s = s.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
    if (kind === 'grey') {
      s = s.toColourspace('b-w');
      if (blur > 0) s = s.blur(Math.max(0.3, blur));
    } else {
      s = s.toColourspace('srgb');
    }
    const { data, info } = await s.raw().toBuffer({ resolveWithObject: true });
    const channels = kind === 'grey' ? 1 : 3;
    if (info.width !== width || info.height !== height || info.channels !== channels) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels} instead of ${width}x${height}x${channels}`);
    }
    return { data, width, height, channels };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new InvalidOptionError(`${param}: the image could not be converted (${why})`, param, { cause: err });
  }
}
