/**
 * Loads the native addon (node-gyp-build: prebuilds/ first, then build/Release) and types it exactly.
 * If nothing loads, throws a {@link NativeBindingError} that lists every attempt and what to do.
 * @internal
 */
import * as fs from 'fs';
import * as path from 'path';
import { NativeBindingError } from './errors';
import type { ModelInfo } from './model';
import type { DeviceInfo } from './system';

/** Engine system information as the addon returns it. */
export interface NativeSystemInfo {
  version: string;
  simd: string;
  threads: number;
  physicalCores: number;
  backends: string[];
  devices: DeviceInfo[];
  backendNotes: string[];
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
    options: { threads: number; weightType: string; tokenizerPath: string; device: string; vramBudget: number; vaeTiling: string; textEncoderOnCpu: number; vaeOnCpu: number; taesdPath?: string },
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
    options: { type: string; vaeType: string; tokenizerPath: string },
    onProgress: ((done: number, total: number) => void) | null,
    abort: NativeAbortHandle | null,
  ): Promise<NativeConvertSummary>;
  validateParams(params: NativeGenerateParams): void;
  AbortHandle: new () => NativeAbortHandle;
  Model: new () => NativeModel;
}

let cached: NativeBinding | undefined;

/** Package root (holds package.json, build/ and prebuilds/), from lib/ (ts) or dist/ (js). */
export const packageRoot = path.resolve(__dirname, '..');

/** Returns the native addon, loading it on first use. Throws NativeBindingError listing every failure. */
export function binding(): NativeBinding {
  if (!cached) cached = loadBinding(packageRoot, process.env.SDNODE_BINARY);
  return cached;
}

/**
 * Loads the addon from `root` (prebuilds/ via node-gyp-build, then build/Release and build/Debug), or from
 * `override` first when given. Throws {@link NativeBindingError} listing every attempt and what to do.
 * @internal
 */
export function loadBinding(root: string, override?: string): NativeBinding {
  const attempts: string[] = [];
  const candidates: Array<[string, () => unknown]> = [];
  if (override) candidates.push([`SDNODE_BINARY=${override}`, () => require(path.resolve(override))]);
  candidates.push([`node-gyp-build(${root})`, () => (require('node-gyp-build') as (dir: string) => unknown)(root)]);
  for (const sub of ['build/Release/sdnode.node', 'build/Debug/sdnode.node']) {
    const p = path.join(root, sub);
    candidates.push([
      p,
      () => {
        if (!fs.existsSync(p)) throw new Error('file does not exist');
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
