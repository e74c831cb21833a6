/**
 * Engine and machine information.
 * @packageDocumentation
 */
import { binding, bindingSource, binaryCandidates } from './binding';

/** A compute device the engine lists (addons with GPU backends; the CPU otherwise). */
export interface DeviceInfo {
  /** `'cpu'`, `'vulkan:0'`, ... (what `LoadOptions.device` takes) */
  id: string;
  backend: string;
  name?: string;
  vendor?: string;
  /** bytes of device memory, when known */
  memory?: number;
  driver?: string;
  /** why the engine already knows it cannot be used */
  unusable?: string;
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
  /** Compiled-in compute backends (`'cpu'`, ...). */
  backends: string[];
  /** Compute devices (at least the CPU). */
  devices: DeviceInfo[];
  /** Path of the native addon in use (a prebuilt one under prebuilds/, or build/Release/sdnode.node). */
  binary: string;
  /** Every addon binary this package could load, in the order tried. */
  binaries: string[];
}

/** Returns the engine version, SIMD level, thread count, backends, devices and the addon in use. Loads the addon on first use. */
export function getSystemInfo(): SystemInfo {
  const s = binding().getSystemInfo();
  const devices: DeviceInfo[] = (s.devices ?? []).map((d) => {
    const o: DeviceInfo = { id: d.id ?? (d.backend === 'cpu' ? 'cpu' : `${d.backend}:${d.index ?? 0}`), backend: d.backend };
    for (const k of ['name', 'vendor', 'memory', 'driver', 'unusable'] as const) if (d[k] !== undefined && d[k] !== '') (o as unknown as Record<string, unknown>)[k] = d[k];
    return o;
  });
  if (!devices.some((d) => d.backend === 'cpu')) devices.push({ id: 'cpu', backend: 'cpu', name: `CPU (${s.simd}, ${s.physicalCores} cores)` });
  return {
    version: s.version,
    simd: s.simd,
    threads: s.threads,
    physicalCores: s.physicalCores,
    backends: [...s.backends],
    devices,
    binary: bindingSource(),
    binaries: binaryCandidates(),
  };
}
