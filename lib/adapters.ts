/**
 * Adapters on the JavaScript side: the option types of `loras` / `controlNet` (validated in options.ts; the control
 * image is decoded with the other input images in model.ts) and the A1111 infotext fields `Lora hashes` and
 * `ControlNet 0`.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageInput } from './options';

/** A LoRA by file path with its weight (multiplier). */
export interface LoraOption {
  /** `.safetensors` (or `.ckpt` / `.pt`) LoRA file: kohya, diffusers/PEFT or LyCORIS LoCon. */
  path: string;
  /** Multiplier, -100 to 100. Default 1. */
  weight?: number;
}

/** ControlNet guidance. */
export interface ControlNetOption {
  /**
   * ControlNet file for the model's family: SD 1.x (lllyasviel `control_model.*` or diffusers layout) or SDXL
   * (diffusers layout, e.g. diffusers/controlnet-canny-sdxl-1.0; the lllyasviel names of the same blocks work too).
   */
  model: string;
  /**
   * The control image, used as given: an edge, depth or pose map made by the caller (no preprocessor runs here).
   * Any image input (path, encoded buffer, raw pixels); an image of another size is resized to exactly the output
   * size by stretching, like `initImage`.
   */
  image: ImageInput;
  /** Multiplier of the ControlNet's residuals, 0 to 10. Default 1. */
  strength?: number;
  /** Fraction of the steps where guidance starts, 0 to 1. Default 0. */
  start?: number;
  /** Fraction of the steps where guidance ends, 0 to 1 (>= start). Default 1. */
  end?: number;
}

/** {@link ControlNetOption} with defaults filled in. */
export interface ResolvedControlNet {
  model: string;
  image: ImageInput;
  strength: number;
  start: number;
  end: number;
}

/** What the addon receives for the ControlNet. @internal */
export interface NativeControlNet {
  model: string;
  strength: number;
  start: number;
  end: number;
  imageWidth: number;
  imageHeight: number;
  imageRgb: Buffer;
}

/** `<lora:NAME:WEIGHT>` tags of a prompt (as the engine reads them). */
export function loraTags(prompt: string): Array<{ name: string; weight: number }> {
  const out: Array<{ name: string; weight: number }> = [];
  for (const m of prompt.matchAll(/<lora:([^>:]+)(?::([^>:]*))?(?::[^>]*)?>/g)) {
    const w = m[2] === undefined ? 1 : Number(m[2]);
    out.push({ name: m[1].trim(), weight: Number.isFinite(w) ? w : 1 });
  }
  return out;
}

const hashCache = new Map<string, Promise<string | undefined>>();

/**
 * A1111's LoRA short hash: SHA-256 of the tensor data of a .safetensors file (the bytes after its header, the
 * "addnet" hash), or of the whole file otherwise; first 12 hex digits. Cached per path, size and mtime.
 */
export function loraHash(file: string): Promise<string | undefined> {
  return cachedHash(file, 'lora', async (st) => {
    let start = 0;
    if (file.toLowerCase().endsWith('.safetensors') && st.size >= 8) {
      const fd = await fs.promises.open(file, 'r');
      try {
        const b = Buffer.alloc(8);
        await fd.read(b, 0, 8, 0);
        start = 8 + Number(b.readBigUInt64LE(0));
      } finally {
        await fd.close();
      }
    }
    return (await sha256(file, start, st.size)).slice(0, 12);
  });
}

/** A1111's legacy model hash (SHA-256 of 64 KiB at offset 1 MiB, 8 hex digits), as ControlNet infotext uses. */
export function legacyModelHash(file: string): Promise<string | undefined> {
  return cachedHash(file, 'legacy', async (st) => (await sha256(file, 0x100000, Math.min(st.size, 0x110000))).slice(0, 8));
}

function cachedHash(file: string, kind: string, fn: (st: fs.Stats) => Promise<string>): Promise<string | undefined> {
  return (async () => {
    const st = await fs.promises.stat(file).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const key = `${kind}:${file}:${st.size}:${st.mtimeMs}`;
    let p = hashCache.get(key);
    if (!p) {
      p = fn(st).catch(() => undefined);
      hashCache.set(key, p);
    }
    return p;
  })();
}

function sha256(file: string, start: number, end: number): Promise<string> {
  const h = createHash('sha256');
  if (end <= start) return Promise.resolve(h.digest('hex'));
  return new Promise((resolve, reject) => {
    fs.createReadStream(file, { start, end: end - 1, highWaterMark: 1 << 20 })
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The LoRA files of a generation: `loras` plus the prompt's tags resolved in loraDir. @internal */
export function loraFiles(p: { prompt: string; loras: Array<{ path: string; weight: number }>; loraDir: string }): Array<{ name: string; path: string }> {
  const out: Array<{ name: string; path: string }> = [];
  for (const t of loraTags(p.prompt)) {
    if (!p.loraDir) continue;
    const found = ['.safetensors', '.ckpt', '.pt', '.bin'].map((e) => path.join(p.loraDir, t.name + e)).find((f) => fs.existsSync(f));
    if (found) out.push({ name: t.name, path: found });
  }
  for (const l of p.loras) out.push({ name: path.basename(l.path).replace(/\.(safetensors|ckpt|pt|bin)$/i, ''), path: l.path });
  return out;
}

/** A1111 infotext fields for the adapters: `Lora hashes`, `ControlNet 0`. @internal */
export async function adapterInfotextFields(p: {
  prompt: string;
  loras: Array<{ path: string; weight: number }>;
  loraDir: string;
  controlNet?: ResolvedControlNet;
}): Promise<Array<[string, string]>> {
  const fields: Array<[string, string]> = [];
  const files = loraFiles(p);
  if (files.length) {
    const parts = await Promise.all(files.map(async (f) => `${f.name}: ${(await loraHash(f.path)) ?? 'unknown'}`));
    fields.push(['Lora hashes', parts.join(', ')]);
  }
  if (p.controlNet) {
    const c = p.controlNet;
    const name = path.basename(c.model).replace(/\.(safetensors|ckpt|pt|pth|bin)$/i, '');
    const h = await legacyModelHash(c.model);
    fields.push([
      'ControlNet 0',
      `Module: none, Model: ${name}${h ? ` [${h}]` : ''}, Weight: ${c.strength}, Guidance Start: ${c.start}, Guidance End: ${c.end}`,
    ]);
  }
  return fields;
}
