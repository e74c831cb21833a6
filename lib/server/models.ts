/**
 * The models a server (or worker) may use: a fixed set of names configured at start-up (files given with --model
 * and the model files found in --model-dir folders), loaded lazily on first use and unloaded least-recently-used
 * when loading another would go over the memory budget. Clients name a model; they never give a path.
 * @internal
 * @packageDocumentation
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, type Model } from '../model';
import type { LoadOptions } from '../options';
import { HttpError } from './limits';

const MODEL_EXTS = ['.safetensors', '.gguf', '.ckpt', '.pt', '.pth'];

/** One configured model. */
export interface ModelEntry {
  /** Name clients use (file name without extension). */
  name: string;
  /** Absolute path (never sent to clients). */
  file: string;
  /** File name shown to clients. */
  filename: string;
  /** Estimated resident bytes when loaded (file size; folders: sum of their files). */
  sizeBytes: number;
}

interface Slot {
  entry: ModelEntry;
  model?: Model;
  loading?: Promise<Model>;
  users: number;
  lastUsed: number;
}

/** Load options shared by every model of the pool. */
export type PoolLoadOptions = Pick<LoadOptions, 'device' | 'vramBudget' | 'vaeTiling' | 'textEncoderOnCpu' | 'vaeOnCpu' | 'threads' | 'weightType' | 'tokenizerPath' | 'taesdPath'>;

function folderSize(p: string): number {
  let total = 0;
  for (const e of fs.readdirSync(p, { withFileTypes: true })) {
    const f = path.join(p, e.name);
    if (e.isDirectory()) total += folderSize(f);
    else if (e.isFile()) total += fs.statSync(f).size;
  }
  return total;
}

function stripExt(file: string): string {
  const ext = path.extname(file);
  return MODEL_EXTS.includes(ext.toLowerCase()) ? file.slice(0, -ext.length) : file;
}

/**
 * Builds the model list from explicit files/folders and model folders. Throws a plain Error (a usage problem) for a
 * missing file, an empty list or two models with the same name.
 */
export function discoverModels(files: readonly string[], dirs: readonly string[]): ModelEntry[] {
  const out: ModelEntry[] = [];
  const add = (p: string): void => {
    const abs = path.resolve(p);
    const st = fs.statSync(abs, { throwIfNoEntry: false });
    if (!st) throw new Error(`model ${JSON.stringify(p)} does not exist (--model)`);
    const base = path.basename(abs);
    const name = stripExt(base);
    const prev = out.find((m) => m.name === name);
    if (prev) throw new Error(`two models are named "${name}" (${prev.file} and ${abs}); rename one or serve only one of them`);
    out.push({ name, file: abs, filename: base, sizeBytes: st.isDirectory() ? folderSize(abs) : st.size });
  };
  for (const f of files) add(f);
  for (const d of dirs) {
    const abs = path.resolve(d);
    const st = fs.statSync(abs, { throwIfNoEntry: false });
    if (!st?.isDirectory()) throw new Error(`model folder ${JSON.stringify(d)} does not exist or is not a folder (--model-dir)`);
    for (const e of fs.readdirSync(abs, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(abs, e.name);
      const st = e.isSymbolicLink() ? fs.statSync(p, { throwIfNoEntry: false }) : e;
      if (st?.isFile() && MODEL_EXTS.includes(path.extname(e.name).toLowerCase())) add(p);
      else if (st?.isDirectory() && fs.existsSync(path.join(p, 'model_index.json'))) add(p); // diffusers folder
    }
  }
  if (out.length === 0) throw new Error('no models: give --model FILE (repeatable) or --model-dir DIR');
  return out;
}

/** LoRA names in the LoRA folder (file names without extension), for listings; never paths. */
/** The server's adapter folders (`--lora-model-dir`, `--embd-dir`, `--control-net-dir`). Never sent to clients. */
export interface AdapterDirs {
  loraDir?: string;
  embeddingDir?: string;
  controlNetDir?: string;
}

const ADAPTER_FLAGS: Record<keyof AdapterDirs, string> = { loraDir: '--lora-model-dir', embeddingDir: '--embd-dir', controlNetDir: '--control-net-dir' };

/** ControlNet file extensions looked up in `--control-net-dir`. */
const CONTROLNET_EXT = /\.(safetensors|ckpt|pt|pth|bin)$/i;

/** The ControlNets of `dir` by name (file name without extension), sorted. */
export function controlNetNames(dir: string | undefined): string[] {
  if (!dir) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && CONTROLNET_EXT.test(e.name))
    .map((e) => e.name.replace(CONTROLNET_EXT, ''))
    .sort();
}

/** The file of ControlNet `name` in `dir` (case-insensitive, like LoRA names), or undefined. */
export function controlNetFile(dir: string | undefined, name: string): string | undefined {
  if (!dir) return undefined;
  const want = name.toLowerCase();
  const f = fs.readdirSync(dir, { withFileTypes: true }).find((e) => e.isFile() && CONTROLNET_EXT.test(e.name) && e.name.replace(CONTROLNET_EXT, '').toLowerCase() === want);
  return f ? path.join(dir, f.name) : undefined;
}

export function loraNames(dir: string | undefined): string[] {
  if (!dir) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => /\.(safetensors|ckpt|pt|bin)$/i.test(e.name))
    .map((e) => e.name.replace(/\.(safetensors|ckpt|pt|bin)$/i, ''))
    .sort();
}

/** One embedding of the server's embedding folder, as `GET /sdapi/v1/embeddings` lists it. */
export interface EmbeddingEntry {
  /** File name without extension: the word that uses it in prompts. */
  name: string;
  /** Vectors (tokens) it stands for; null when the file's layout is not read here (`.pt`, `.bin`). */
  vectors: number | null;
  /** Width of its vectors (SDXL files: clip_l + clip_g widths, as A1111 reports them); null when not read. */
  shape: number | null;
}

/** Largest safetensors header read for the listing (embedding files have a few tensors). */
const MAX_EMBEDDING_HEADER = 1 << 20;

/**
 * The embeddings of `dir` (`--embd-dir`): `.safetensors` headers are read (off the event loop) for the vector count
 * and width; `.pt`/`.bin` files are listed without them. Files that are not embeddings go to `skipped`, with why.
 */
export async function embeddingEntries(dir: string | undefined): Promise<{ loaded: EmbeddingEntry[]; skipped: Array<{ name: string; reason: string }> }> {
  const loaded: EmbeddingEntry[] = [];
  const skipped: Array<{ name: string; reason: string }> = [];
  if (!dir) return { loaded, skipped };
  const files = (await fs.promises.readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && /\.(safetensors|pt|bin)$/i.test(e.name));
  files.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const f of files) {
    const name = f.name.replace(/\.(safetensors|pt|bin)$/i, '');
    if (!/\.safetensors$/i.test(f.name)) {
      loaded.push({ name, vectors: null, shape: null });
      continue;
    }
    let header: Record<string, { shape?: unknown }> | undefined;
    let reason = 'not a readable safetensors file';
    const fh = await fs.promises.open(path.join(dir, f.name), 'r').catch(() => undefined);
    if (fh) {
      try {
        const len = Buffer.alloc(8);
        if ((await fh.read(len, 0, 8, 0)).bytesRead === 8) {
          const n = len.readBigUInt64LE(0);
          if (n > 0n && n <= BigInt(MAX_EMBEDDING_HEADER)) {
            const buf = Buffer.alloc(Number(n));
            if ((await fh.read(buf, 0, buf.length, 8)).bytesRead === buf.length) {
              try {
                const h = JSON.parse(buf.toString('utf8'));
                if (h && typeof h === 'object' && !Array.isArray(h)) header = h;
              } catch {
                // reason stays
              }
            }
          }
        }
      } finally {
        await fh.close();
      }
    }
    const shapeOf = (k: string): number[] | undefined => {
      const v = header?.[k]?.shape;
      return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x)) ? (v as number[]) : undefined;
    };
    const rows = (s: number[]): number => (s.length >= 2 ? s[0] : 1);
    const width = (s: number[]): number => s[s.length - 1] ?? 0;
    if (header) {
      const keys = Object.keys(header).filter((k) => k !== '__metadata__');
      const l = shapeOf('clip_l');
      const g = shapeOf('clip_g');
      const single = keys.find((k) => k === 'emb_params' || k.startsWith('string_to_param.')) ?? (keys.length === 1 ? keys[0] : undefined);
      const s = single ? shapeOf(single) : undefined;
      if (l && g && l.length > 0 && g.length > 0) {
        loaded.push({ name, vectors: rows(g), shape: width(l) + width(g) });
        continue;
      }
      if (s && s.length >= 1 && s.length <= 2) {
        loaded.push({ name, vectors: rows(s), shape: width(s) });
        continue;
      }
      reason = 'no emb_params, string_to_param.*, clip_l/clip_g or single tensor';
    }
    skipped.push({ name, reason });
  }
  return { loaded, skipped };
}

/** Lazily loaded models under a memory budget. */
export class ModelPool {
  readonly entries: readonly ModelEntry[];
  readonly budgetBytes: number;
  #slots = new Map<string, Slot>();
  #waiters: Array<() => void> = [];
  #load: (entry: ModelEntry) => Promise<Model>;
  #log: (line: string) => void;

  /** LoRA, embedding and ControlNet folders (`--lora-model-dir`, `--embd-dir`, `--control-net-dir`). */
  readonly adapterDirs: AdapterDirs;
  /** Whether the models load a TAESD file (`--taesd`), which `decoder: 'taesd'` and `previewMethod: 'taesd'` need. */
  readonly taesd: boolean;

  constructor(
    entries: readonly ModelEntry[],
    opts: { budgetBytes: number; load?: PoolLoadOptions; loader?: (entry: ModelEntry) => Promise<Model>; log?: (line: string) => void; adapterDirs?: AdapterDirs },
  ) {
    this.entries = entries;
    this.adapterDirs = {};
    for (const [k, v] of Object.entries(opts.adapterDirs ?? {})) {
      if (!v) continue;
      const st = fs.statSync(v, { throwIfNoEntry: false });
      if (!st?.isDirectory()) throw new Error(`${ADAPTER_FLAGS[k as keyof AdapterDirs] ?? k} ${JSON.stringify(v)} is not a folder`);
      this.adapterDirs[k as keyof AdapterDirs] = path.resolve(v);
    }
    this.budgetBytes = opts.budgetBytes;
    this.#log = opts.log ?? (() => {});
    const loadOpts = opts.load ?? {};
    this.taesd = !!loadOpts.taesdPath;
    this.#load = opts.loader ?? defaultLoader(loadOpts);
    for (const e of entries) this.#slots.set(e.name, { entry: e, users: 0, lastUsed: 0 });
  }

  /** The default model (the first configured). */
  get defaultName(): string {
    return this.entries[0].name;
  }

  /** Names of the models loaded now. */
  get loaded(): string[] {
    return [...this.#slots.values()].filter((s) => s.model).map((s) => s.entry.name);
  }

  /**
   * The entry for a client-given name: '' is the default; A1111 titles ("name [hash]") and file names are
   * accepted. Unknown names are a 404 listing the names.
   */
  resolve(name: string): ModelEntry {
    if (name === '') return this.entries[0];
    const n = name.replace(/\s*\[[0-9a-f]{8,64}\]$/i, '');
    const e = this.entries.find((m) => m.name === n || m.filename === n);
    if (!e) throw new HttpError(404, 'model_not_found', `unknown model ${JSON.stringify(name)}; this server has: ${this.entries.map((m) => m.name).join(', ')}`, { param: 'model' });
    return e;
  }

  /** Loads (if needed) and holds a model until `release` is called. */
  async acquire(name: string, signal?: AbortSignal): Promise<{ model: Model; release: () => void }> {
    const slot = this.#slots.get(name);
    if (!slot) throw new HttpError(404, 'model_not_found', `unknown model ${JSON.stringify(name)}`);
    slot.users++;
    try {
      if (!slot.model) {
        if (!slot.loading) {
          slot.loading = (async () => {
            await this.#makeRoom(slot, signal);
            this.#log(`loading model ${slot.entry.name} (${(slot.entry.sizeBytes / 2 ** 20).toFixed(0)} MiB)`);
            return this.#load(slot.entry);
          })();
          slot.loading.then(
            (m) => {
              slot.model = m;
              slot.loading = undefined;
            },
            () => {
              slot.loading = undefined;
            },
          );
        }
        await slot.loading;
      }
    } catch (err) {
      slot.users--;
      this.#wake();
      throw err;
    }
    slot.lastUsed = performance.now();
    let released = false;
    return {
      model: slot.model!,
      release: () => {
        if (released) return;
        released = true;
        slot.users--;
        slot.lastUsed = performance.now();
        this.#wake();
      },
    };
  }

  #wake(): void {
    const w = this.#waiters.splice(0);
    for (const f of w) f();
  }

  /** Unloads idle models, least recently used first, until `slot` fits; waits for busy ones when needed. */
  async #makeRoom(slot: Slot, signal?: AbortSignal): Promise<void> {
    for (;;) {
      const others = [...this.#slots.values()].filter((s) => s !== slot && (s.model || s.loading));
      const used = others.reduce((a, s) => a + s.entry.sizeBytes, 0);
      if (used + slot.entry.sizeBytes <= this.budgetBytes || others.length === 0) {
        if (others.length === 0 && slot.entry.sizeBytes > this.budgetBytes) {
          this.#log(`model ${slot.entry.name} (${(slot.entry.sizeBytes / 2 ** 20).toFixed(0)} MiB) is larger than the memory budget; loading it alone`);
        }
        return;
      }
      const idle = others.filter((s) => s.model && s.users === 0).sort((a, b) => a.lastUsed - b.lastUsed);
      if (idle.length > 0) {
        const victim = idle[0];
        const m = victim.model!;
        victim.model = undefined;
        this.#log(`unloading model ${victim.entry.name} (least recently used) to stay within the memory budget`);
        await m.dispose();
        continue;
      }
      // Every other model is busy: wait until one is released.
      await new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        this.#waiters.push(resolve);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
  }

  /** Disposes every loaded model. */
  async close(): Promise<void> {
    const all = [...this.#slots.values()];
    await Promise.all(all.map(async (s) => {
      const m = s.model ?? (await s.loading?.catch(() => undefined));
      s.model = undefined;
      await m?.dispose();
    }));
  }
}

function defaultLoader(opts: PoolLoadOptions): (entry: ModelEntry) => Promise<Model> {
  return async (entry) => {
    // Internal test hook, as in `sdnode generate`: SDNODE_TEST_FAKE_MODEL='{"stepMs":5}' swaps in the addon's
    // fake engine (sleeps instead of computing), so long jobs can be tested without weights or CPU load.
    const fake = process.env.SDNODE_TEST_FAKE_MODEL;
    if (fake) {
      const { loadFakeModel } = await import('../testing');
      return loadFakeModel(JSON.parse(fake));
    }
    return loadModel(entry.file, { ...opts });
  };
}
