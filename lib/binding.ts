/**
 * Loads the native addon (node-gyp-build: prebuilds/ first, then build/Release) and types it exactly.
 * If nothing loads, throws a {@link NativeBindingError} that lists every attempt and what to do.
 * @internal
 */
import type { NativeControlNet } from './adapters';
import * as fs from 'fs';
import * as path from 'path';
import { NativeBindingError } from './errors';
import type { ModelInfo } from './model';
import type { SystemInfo } from './system';

/** Engine system information as the addon returns it: the public {@link SystemInfo} without the addon paths, which
 * lib/system.ts adds. */
export type NativeSystemInfo = Omit<SystemInfo, 'binary' | 'binaries'>;

/** What the addon's `probeDevice(spec)` answers: whether the backend for that device could be created. */
export interface NativeProbeResult {
  ok: boolean;
  /** device name, driver version, ... as the backend reports them */
  name?: string;
  driver?: string;
  /** why not, when ok is false */
  reason?: string;
}

/** `sdn::ModelInfo` as the addon returns it: the public, documented {@link ModelInfo}. */
export type NativeModelInfo = ModelInfo;

export interface NativeConvertSummary {
  tensorCount: number;
  bytesIn: number;
  bytesOut: number;
  tensorsByType: Record<string, number>;
}

export interface NativeImage {
  width: number;
  height: number;
  channels: number;
  data: Buffer;
  seed: number;
  /** Adapter notes (final images only). */
  warnings?: string[];
  adapterBytes?: number;
}

export interface NativeProgress {
  phase: 'encode' | 'sample' | 'decode';
  step: number;
  steps: number;
  image: number;
  images: number;
  /** ms since the call started running, measured on the engine thread */
  timeMs: number;
}

export interface NativePreview extends NativeImage {
  step: number;
  timeMs: number;
}

export interface NativeGenerateParams {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  sampler: string;
  scheduler: string;
  seed: number;
  rng: string;
  clipSkip: number;
  batchCount: number;
  previewEvery: number;
  /** Defaults (engine side): 'latent', 0.75, 'vae'. */
  previewMethod?: string;
  strength?: number;
  decoder?: string;
  maskBlur?: number;
  /** RGB pixels of exactly width x height. */
  initImage?: { data: Buffer; width: number; height: number; channels: number };
  /** Grey pixels of exactly width x height. */
  mask?: { data: Buffer; width: number; height: number; channels: number };
  loras?: Array<{ path: string; weight: number }>;
  loraDir?: string;
  embeddingDir?: string;
  controlNet?: NativeControlNet;
}

export interface NativeAbortHandle {
  abort(): void;
  readonly aborted: boolean;
}

export interface NativeModelParts {
  file?: string;
  unet?: string;
  vae?: string;
  textEncoder?: string;
  tokenizer?: string;
}

export interface NativeFakeOptions {
  loadMs?: number;
  encodeMs?: number;
  stepMs?: number;
  decodeMs?: number;
  scratchBytes?: number;
}

export interface NativeModel {
  load(
    pathOrParts: string | NativeModelParts,
    options: {
      threads: number;
      weightType: string;
      tokenizerPath: string;
      prediction: string;
      fallbackMerges?: string;
      device: string;
      vramBudget: number;
      vaeTiling: string;
      textEncoderOnCpu: number;
      vaeOnCpu: number;
      taesdPath?: string;
    },
    onProgress: ((fraction: number) => void) | null,
    abort: NativeAbortHandle | null,
  ): Promise<NativeModelInfo>;
  loadFake(options: NativeFakeOptions, onProgress: ((fraction: number) => void) | null, abort: NativeAbortHandle | null): Promise<NativeModelInfo>;
  generate(
    params: NativeGenerateParams,
    onProgress: ((p: NativeProgress) => void) | null,
    onPreview: ((p: NativePreview) => void) | null,
    abort: NativeAbortHandle | null,
  ): Promise<NativeImage[]>;
  dispose(): Promise<void>;
  readonly disposed: boolean;
}

/** The exact shape of build/Release/sdnode.node (native/addon/addon.cpp). */
export interface NativeBinding {
  getSystemInfo(): NativeSystemInfo;
  inspect(path: string): Promise<NativeModelInfo>;
  convert(
    input: string,
    output: string,
    options: { type: string; vaeType: string; tokenizerPath: string; fallbackMerges?: string },
    onProgress: ((done: number, total: number) => void) | null,
    abort: NativeAbortHandle | null,
  ): Promise<NativeConvertSummary>;
  validateParams(params: NativeGenerateParams): void;
  /** Creates (and releases) the backend for one device: a GPU driver that crashes, crashes here. Optional. */
  probeDevice?(spec: string): NativeProbeResult;
  /** Names of the compiled-in backends, without enumerating devices (no GPU driver is loaded). Optional. */
  compiledBackends?(): string[];
  AbortHandle: new () => NativeAbortHandle;
  Model: new () => NativeModel;
}

let cached: NativeBinding | undefined;
let cachedFrom = '';
let loadedInMs = 0;

/** Milliseconds the first binding() call took to load the addon (0 before loading). @internal */
export function bindingLoadMs(): number {
  return loadedInMs;
}

/** The path of the loaded addon; '' before loading. */
export function bindingSource(): string {
  return cachedFrom;
}

/** Package root (holds package.json, build/ and prebuilds/), from lib/ (ts) or dist/ (js). */
export const packageRoot = path.resolve(__dirname, '..');

/**
 * Where the native binaries of a package root live. Inside an Electron app archive (`.../app.asar/...`) a binary
 * cannot be loaded; packagers unpack it to `app.asar.unpacked` (electron-builder `asarUnpack`, Forge
 * `asar.unpack`), so the unpacked twin is used when it exists.
 * @internal
 */
export function nativeRoot(root: string): string {
  const marker = `${path.sep}app.asar${path.sep}`;
  const i = root.indexOf(marker);
  if (i < 0) return root;
  const unpacked = `${root.slice(0, i)}${path.sep}app.asar.unpacked${path.sep}${root.slice(i + marker.length)}`;
  return fs.existsSync(unpacked) ? unpacked : root;
}

/** Returns the native addon, loading it on first use. Throws NativeBindingError listing every failure. */
export function binding(): NativeBinding {
  if (!cached) {
    const found: string[] = [];
    const t0 = performance.now();
    cached = loadBinding(nativeRoot(packageRoot), process.env.SDNODE_BINARY, found);
    loadedInMs = performance.now() - t0;
    cachedFrom = found[0] ?? '';
  }
  return cached;
}

/**
 * Loads the addon from `root` (prebuilds/ via node-gyp-build, then build/Release and build/Debug), or from
 * `override` first when given. Throws {@link NativeBindingError} listing every attempt and what to do.
 * @internal
 */
export function loadBinding(root: string, override?: string, loadedFrom?: string[]): NativeBinding {
  const attempts: string[] = [];
  const candidates: Array<[string, () => unknown]> = [];
  let resolved = '';
  if (override) {
    candidates.push([
      `SDNODE_BINARY=${override}`,
      () => {
        resolved = path.resolve(override);
        return require(resolved);
      },
    ]);
  }
  candidates.push([
    `node-gyp-build(${root})`,
    () => {
      // node-gyp-build's own choice (build/Release, then a matching prebuilds/<platform>-<arch>/*.node), by path
      resolved = (require('node-gyp-build') as { resolve(dir: string): string }).resolve(root);
      return require(resolved);
    },
  ]);
  for (const sub of ['build/Release/sdnode.node', 'build/Debug/sdnode.node']) {
    const p = path.join(root, sub);
    candidates.push([
      p,
      () => {
        if (!fs.existsSync(p)) throw new Error('file does not exist');
        resolved = p;
        return require(p);
      },
    ]);
  }
  for (const [where, load] of candidates) {
    try {
      const b = load() as Partial<NativeBinding>;
      if (typeof b?.getSystemInfo !== 'function' || typeof b.Model !== 'function') {
        attempts.push(`${where}: loaded, but it is not the sdnode addon (or an incompatible version)`);
        continue;
      }
      loadedFrom?.push(resolved || where);
      return b as NativeBinding;
    } catch (err) {
      attempts.push(`${where}: ${String((err as Error)?.message ?? err).split('\n')[0]}`);
    }
  }
  const platform = `${process.platform}-${process.arch}, Node ${process.versions.node} (N-API ${process.versions.napi})`;
  const message =
    `sdnode could not load its native addon on ${platform}. Tried:\n` +
    attempts.map((a) => `  - ${a}`).join('\n') +
    '\nWhat to do:\n' +
    '  - build it from source: `npm rebuild sdnode` (needs cmake >= 3.16 and a C++17 compiler;\n' +
    '    Debian/Ubuntu: apt-get install cmake g++, macOS: xcode-select --install && brew install cmake)\n' +
    '  - in a clone of the repository: `npm run build`\n' +
    '  - Electron: the same N-API binary works, but it must match the platform and CPU architecture\n' +
    '  - or point SDNODE_BINARY at a sdnode.node built for this platform';
  throw new NativeBindingError(message, attempts);
}

/**
 * The seam between device selection (lib/device.ts) and the addon: asks the native side to create the backend
 * for `spec` (`'cpu'`, `'vulkan:0'`, ...). Addons without GPU backends have no `probeDevice`; then only `'cpu'` is
 * usable and every other device is reported as "no GPU backends compiled in". Runs in the calling process: use
 * lib/device.ts's probe, which calls this in a short-lived child process.
 * @internal
 */
export function probeDevice(spec: string, b: NativeBinding = binding()): NativeProbeResult {
  if (typeof b.probeDevice === 'function') return b.probeDevice(spec);
  if (spec === 'cpu') return { ok: true, name: 'CPU' };
  return { ok: false, reason: 'no GPU backends compiled in (this sdnode binary has the CPU backend only)' };
}

/** Every addon binary this package could load, in the order it tries them (for `sdnode system`). */
export function binaryCandidates(root: string = nativeRoot(packageRoot)): string[] {
  const out: string[] = [];
  if (process.env.SDNODE_BINARY) out.push(path.resolve(process.env.SDNODE_BINARY));
  for (const sub of ['build/Release/sdnode.node', 'build/Debug/sdnode.node']) {
    const p = path.join(root, sub);
    if (fs.existsSync(p)) out.push(p);
  }
  const pre = path.join(root, 'prebuilds');
  try {
    for (const dir of fs.readdirSync(pre)) {
      const d = path.join(pre, dir);
      if (!fs.statSync(d).isDirectory()) continue;
      for (const f of fs.readdirSync(d)) if (f.endsWith('.node')) out.push(path.join(d, f));
    }
  } catch {
    /* no prebuilds/ */
  }
  return out;
}
