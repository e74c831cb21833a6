/**
 * Engine and machine information.
 * @packageDocumentation
 */
import { binding } from './binding';

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
}

/** Returns the engine version, SIMD level, thread count and backends. Loads the native addon on first use. */
export function getSystemInfo(): SystemInfo {
  const s = binding().getSystemInfo();
  return { version: s.version, simd: s.simd, threads: s.threads, physicalCores: s.physicalCores, backends: [...s.backends] };
}
