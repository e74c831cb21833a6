/**
 * Engine and machine information.
 * @packageDocumentation
 */
import { binding, bindingSource, binaryCandidates } from './binding';

/** A compute device a compiled-in backend can run on (see {@link LoadOptions.device}). */
export interface DeviceInfo {
  /** What `device` takes: `'cpu'`, `'vulkan:0'`, ... */
  id: string;
  /** Backend: `'cpu'`, `'vulkan'`, ... */
  backend: string;
  /** Index within the backend. */
  index: number;
  /** Device name, e.g. `'NVIDIA H200'`, `'llvmpipe (LLVM 15.0.6, 256 bits)'`. */
  name: string;
  /** Vendor, e.g. `'NVIDIA'`, `'AMD'`, `'Mesa'` (empty when unknown). */
  vendor: string;
  /** Driver name and version where known. */
  driver: string;
  /** `'cpu'`, `'discrete'`, `'integrated'`, `'virtual'` or `'software'` (a software rasteriser such as lavapipe). */
  type: string;
  /** Device-local memory in bytes (installed RAM for the CPU). */
  memoryBytes: number;
  /** 16-bit float arithmetic in kernels. */
  fp16: boolean;
  /** 8-bit integer arithmetic in kernels. */
  int8: boolean;
  /** Tensor-core style matrix instructions (cooperative matrix). */
  cooperativeMatrix: boolean;
  /**
   * Vulkan devices: whether sdnode's cooperative-matrix GEMM kernel would run, and why not: `"not used: <reason>"`,
   * or `"candidate: ..."` (a self-check against the plain kernel decides when a model loads on it). That kernel has
   * never been executed on any device (none available offered the extension); see docs/API.md.
   */
  cooperativeMatrixKernel?: string;
  /** Whether models can run on it. */
  usable: boolean;
  /** Why not, when `usable` is false. */
  unusableReason?: string;
}

/** What the engine runs with. */
export interface SystemInfo {
  /** Engine version. */
  version: string;
  /** SIMD level in use: `'avx512'`, `'avx2'`, `'neon'` or `'scalar'`. */
  simd: string;
  /** Threads of the engine's CPU pool. */
  threads: number;
  /** Physical CPU cores detected. */
  physicalCores: number;
  /** Compiled-in compute backends (`'cpu'`, `'vulkan'`, ...). */
  backends: string[];
  /** Every device of every compiled-in backend, the CPU first. */
  devices: DeviceInfo[];
  /** Why a compiled-in backend has no devices here (e.g. `'vulkan: no Vulkan loader found (libvulkan.so.1)'`). */
  backendNotes: string[];
  /** Path of the native addon in use (a prebuilt one under prebuilds/, or build/Release/sdnode.node). */
  binary: string;
  /** Every addon binary this package could load, in the order tried. */
  binaries: string[];
}

/** Returns the engine version, SIMD level, thread count, backends, devices and the addon in use. Loads the addon on first use. */
export function getSystemInfo(): SystemInfo {
  const s = binding().getSystemInfo();
  return {
    version: s.version,
    simd: s.simd,
    threads: s.threads,
    physicalCores: s.physicalCores,
    backends: [...s.backends],
    devices: (s.devices ?? []).map((d) => ({ ...d })),
    backendNotes: [...(s.backendNotes ?? [])],
    binary: bindingSource(),
    binaries: binaryCandidates(),
  };
}
