/**
 * Choosing the compute device at run time, safely.
 *
 * Before a GPU backend is used for the first time, it is test-loaded in a short-lived child process (the same
 * Node or Electron binary, `ELECTRON_RUN_AS_NODE=1`), which loads the addon and asks the native side to create the
 * backend for that device. A driver that crashes, hangs or fails then takes down the child, never the caller. The
 * verdict is remembered in the per-user cache (`device-probes.json`) per device, addon binary and driver
 * fingerprint (the Vulkan ICD manifests and the NVIDIA kernel driver version), so it is made once per driver
 * update. `'auto'` tries the usable GPU devices in order and finally the CPU, keeping the reason for each one
 * passed over.
 * @packageDocumentation
 */
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { binaryCandidates, binding, bindingSource, packageRoot, type NativeBinding } from './binding';
import { readRecord, writeRecord } from './cache';
import { UnsupportedError } from './errors';
import { getSystemInfo, type DeviceInfo, type SystemInfo } from './system';

/** The verdict on one device. */
export interface DeviceProbe {
  /** `'cpu'`, `'vulkan:0'`, ... */
  device: string;
  usable: boolean;
  /** Why not (crash, timeout, driver error, not compiled in), when `usable` is false. */
  reason?: string;
  /** Device name / driver as the backend reported them. */
  name?: string;
  driver?: string;
  /** True when the verdict came from the per-user cache (no child process was started). */
  cached: boolean;
  /** Milliseconds the test load took (0 when cached or for the CPU). */
  probeMs: number;
}

/** What {@link chooseDevice} decided. */
export interface DeviceChoice {
  /** The device to use. */
  device: string;
  /** Why this one: e.g. `'auto: vulkan:0 passed its test load'` or `'auto: no usable GPU; the CPU'`. */
  reason: string;
  /** Devices tried before it and why each was passed over. */
  skipped: Array<{ device: string; reason: string }>;
}

/** Options of {@link probeDeviceIsolated} and {@link chooseDevice}. */
export interface ProbeOptions {
  /** Milliseconds a test load may take before the child is killed and the device marked unusable. Default 20 000. */
  timeoutMs?: number;
  /** Ignore (and replace) cached verdicts. Default false. */
  refresh?: boolean;
}

const PROBE_CACHE = 'device-probes.json';
const DEFAULT_TIMEOUT_MS = 20_000;

interface ProbeRecord {
  usable: boolean;
  reason?: string;
  name?: string;
  driver?: string;
  at: string;
}

/** The backend part of a device spec: `'vulkan:1'` -> `'vulkan'`. */
export function backendOf(spec: string): string {
  const i = spec.indexOf(':');
  return i < 0 ? spec : spec.slice(0, i);
}

function statKey(p: string): string {
  try {
    const st = fs.statSync(p);
    return `${p}:${st.size}:${Math.round(st.mtimeMs)}`;
  } catch {
    return `${p}:missing`;
  }
}

function listJson(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/**
 * A fingerprint of the installed driver for a backend, read without loading it: for Vulkan the ICD manifests
 * (`VK_DRIVER_FILES` / `VK_ICD_FILENAMES`, else the standard folders) and the NVIDIA kernel driver version. It
 * changes when a driver is installed, removed or updated, which invalidates cached verdicts.
 * @internal
 */
export function driverFingerprint(backend: string): string {
  if (backend === 'cpu') return 'cpu';
  const parts: string[] = [];
  if (backend === 'vulkan') {
    const env = process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES;
    const files = env
      ? env.split(path.delimiter).filter(Boolean)
      : ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'].flatMap(listJson);
    for (const f of files) parts.push(statKey(f));
  }
  try {
    parts.push(fs.readFileSync('/proc/driver/nvidia/version', 'utf8').split('\n')[0]);
  } catch {
    /* no NVIDIA kernel driver */
  }
  return createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 16);
}

/** The loaded addon's identity (path, size, mtime): a rebuilt or updated binary gets fresh verdicts. */
function binaryFingerprint(): string {
  binding();
  return statKey(bindingSource());
}

function cacheKey(spec: string): string {
  return `${spec}|${driverFingerprint(backendOf(spec))}|${binaryFingerprint()}`;
}

/**
 * The child process's program: load the addon the parent uses, then either probe one device (`probe SPEC`) or list
 * the devices (`list`: enumerating GPU devices loads their drivers too), and print one JSON line.
 */
const CHILD_SOURCE = `
const [bindingJs, op, spec] = process.argv.slice(-3);
let out;
try {
  const b = require(bindingJs);
  if (op === 'list') {
    const s = b.binding().getSystemInfo();
    out = { ok: true, devices: s.devices || [], notes: s.backendNotes || [], info: s };
  } else {
    out = b.probeDevice(spec);
  }
} catch (err) {
  out = { ok: false, reason: 'test load failed: ' + String((err && err.message) || err).split('\\n')[0] };
}
process.stdout.write('SDNODE_PROBE ' + JSON.stringify(out) + '\\n', () => process.exit(0));
`;

type ChildAnswer = { answer: Record<string, unknown>; ms: number } | { failure: string; ms: number; retryable?: boolean };

/** Runs CHILD_SOURCE with `args` in a child process (the same Node/Electron binary) and returns its answer. */
function runChild(args: string[], timeoutMs: number): Promise<ChildAnswer> {
  const started = performance.now();
  const ms = (): number => Math.round(performance.now() - started);
  // dist/binding.js (compiled JavaScript) even when this runs from lib/ under ts-jest
  const bindingJs = path.join(packageRoot, 'dist', 'binding.js');
  return new Promise((resolve) => {
    if (!fs.existsSync(bindingJs)) {
      resolve({ failure: `cannot test-load: ${bindingJs} is missing (build the TypeScript first: npm run build)`, ms: 0, retryable: true });
      return;
    }
    const child = spawn(process.execPath, ['-e', CHILD_SOURCE, bindingJs, ...args], {
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4000) stderr += d.toString('utf8');
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ failure: `could not start the test process (${err.message})`, ms: ms(), retryable: true });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return resolve({ failure: `the test load did not finish within ${timeoutMs} ms (driver hang?)`, ms: ms() });
      const line = stdout.split('\n').find((l) => l.startsWith('SDNODE_PROBE '));
      if (line) {
        try {
          const answer = JSON.parse(line.slice('SDNODE_PROBE '.length)) as unknown;
          if (answer !== null && typeof answer === 'object') return resolve({ answer: answer as Record<string, unknown>, ms: ms() });
        } catch {
          /* garbled: reported as a crash below */
        }
      }
      const last = stderr.trim().split('\n').slice(-1)[0];
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve({ failure: `the test load crashed: the test process ${how}${last ? ` (${last.slice(0, 200)})` : ''}`, ms: ms() });
    });
  });
}

/**
 * Test-loads one device's backend in a child process and returns the verdict (not cached; see {@link probeDevice}).
 * The child runs this package's own binding loader, so it loads the same addon (`SDNODE_BINARY` included).
 * @internal
 */
export async function probeInChild(spec: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Omit<DeviceProbe, 'cached'> & { retryable?: boolean }> {
  const r = await runChild(['probe', spec], timeoutMs);
  if ('failure' in r) return { device: spec, usable: false, reason: r.failure, probeMs: r.ms, ...(r.retryable ? { retryable: true } : {}) };
  const a = r.answer;
  const out: Omit<DeviceProbe, 'cached'> = { device: spec, usable: a.ok === true, probeMs: r.ms };
  if (typeof a.name === 'string' && a.name) out.name = a.name;
  if (typeof a.driver === 'string' && a.driver) out.driver = a.driver;
  if (a.ok !== true) out.reason = typeof a.reason === 'string' && a.reason ? a.reason : 'the backend could not be created';
  return out;
}

/**
 * {@link getSystemInfo} made in a child process when GPU backends are compiled in (enumerating devices loads their
 * drivers), in this process otherwise; never cached. When the child fails, `error` says why and `info` holds what
 * is known without the engine's enumeration (the CPU device only).
 * @internal
 */
export async function systemInfoIsolated(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ info: SystemInfo; error?: string }> {
  const b = binding();
  const gpuBackends = compiledBackends(b).filter((n) => n !== 'cpu');
  if (gpuBackends.length === 0) return { info: getSystemInfo() };
  const extra = { binary: bindingSource(), binaries: binaryCandidates() };
  const r = await runChild(['list', ''], timeoutMs);
  if (!('failure' in r) && r.answer.ok === true && r.answer.info && typeof r.answer.info === 'object') {
    const n = r.answer.info as SystemInfo;
    return { info: { ...n, devices: n.devices ?? [], backendNotes: n.backendNotes ?? [], ...extra } };
  }
  const error = `listing the ${gpuBackends.join('/')} devices failed: ${'failure' in r ? r.failure : String(r.answer.reason)}`;
  const cpu: DeviceInfo = {
    id: 'cpu', backend: 'cpu', index: 0, name: 'CPU', vendor: '', driver: '', type: 'cpu', memoryBytes: 0,
    fp16: false, int8: false, cooperativeMatrix: false, usable: true,
  };
  let version = '';
  try {
    version = (require(path.join(packageRoot, 'package.json')) as { version: string }).version;
  } catch {
    /* unknown */
  }
  return {
    info: { version, simd: 'unknown', threads: 0, physicalCores: 0, backends: compiledBackends(b), devices: [cpu], backendNotes: [error], ...extra },
    error,
  };
}

/** The backends compiled into the addon, without touching any GPU runtime. */
export function compiledBackends(b: NativeBinding = binding()): string[] {
  if (typeof b.compiledBackends === 'function') return b.compiledBackends();
  return b.getSystemInfo().backends; // older addons: enumerates devices in this process
}

/** The devices as a child process lists them, and why a backend has none. */
export interface DeviceList {
  devices: DeviceInfo[];
  notes: string[];
  /** Set when listing itself failed (crash, hang): then only the CPU can be used. */
  error?: string;
  cached: boolean;
}

interface ListRecord {
  devices: DeviceInfo[];
  notes: string[];
  error?: string;
  at: string;
}

/**
 * Lists the devices without loading any GPU driver into this process: a child process enumerates them (that loads
 * the drivers), once per addon binary and driver fingerprint; the list is remembered like the verdicts. With the
 * CPU backend only, nothing is started.
 */
export async function listDevicesIsolated(options: ProbeOptions = {}): Promise<DeviceList> {
  const gpuBackends = compiledBackends().filter((b) => b !== 'cpu');
  if (gpuBackends.length === 0) return { devices: binding().getSystemInfo().devices, notes: [], cached: false };
  const key = `list|${gpuBackends.map(driverFingerprint).join(',')}|${binaryFingerprint()}`;
  if (!options.refresh) {
    const rec = (await readRecord<ListRecord>(PROBE_CACHE))[key];
    if (rec && Array.isArray(rec.devices)) return { devices: rec.devices, notes: rec.notes ?? [], ...(rec.error ? { error: rec.error } : {}), cached: true };
  }
  const r = await runChild(['list', ''], options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  let out: ListRecord;
  if ('failure' in r) {
    out = { devices: [], notes: [], error: `listing the ${gpuBackends.join('/')} devices failed: ${r.failure}`, at: new Date().toISOString() };
    if (r.retryable) return { devices: [], notes: [], error: out.error, cached: false };
  } else if (r.answer.ok !== true) {
    out = { devices: [], notes: [], error: `listing the ${gpuBackends.join('/')} devices failed: ${String(r.answer.reason)}`, at: new Date().toISOString() };
  } else {
    out = {
      devices: Array.isArray(r.answer.devices) ? (r.answer.devices as DeviceInfo[]) : [],
      notes: Array.isArray(r.answer.notes) ? (r.answer.notes as string[]) : [],
      at: new Date().toISOString(),
    };
  }
  await writeRecord(PROBE_CACHE, key, out);
  return { devices: out.devices, notes: out.notes, ...(out.error ? { error: out.error } : {}), cached: false };
}

/**
 * The verdict on one device: the CPU is always usable; any other device is test-loaded in a child process the
 * first time, and the verdict is remembered per device, addon binary and driver.
 */
export async function probeDevice(spec: string, options: ProbeOptions = {}): Promise<DeviceProbe> {
  if (spec === 'cpu') return { device: 'cpu', usable: true, cached: false, probeMs: 0, name: 'CPU' };
  const key = cacheKey(spec);
  if (!options.refresh) {
    const rec = (await readRecord<ProbeRecord>(PROBE_CACHE))[key];
    if (rec && typeof rec.usable === 'boolean') {
      const p: DeviceProbe = { device: spec, usable: rec.usable, cached: true, probeMs: 0 };
      if (rec.reason) p.reason = rec.reason;
      if (rec.name) p.name = rec.name;
      if (rec.driver) p.driver = rec.driver;
      return p;
    }
  }
  const r = await probeInChild(spec, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const rec: ProbeRecord = { usable: r.usable, at: new Date().toISOString() };
  if (r.reason) rec.reason = r.reason;
  if (r.name) rec.name = r.name;
  if (r.driver) rec.driver = r.driver;
  // a start failure of the child says nothing about the driver: not remembered
  const { retryable, ...verdict } = r;
  if (!retryable) await writeRecord(PROBE_CACHE, key, rec);
  return { ...verdict, cached: false };
}

/** Device specs from a device list: the GPU ones in the addon's order, the CPU last. */
export function deviceSpecs(devices: readonly DeviceInfo[]): Array<{ spec: string; info?: DeviceInfo }> {
  const out: Array<{ spec: string; info?: DeviceInfo }> = [];
  for (const d of devices) {
    const spec = d.id || (d.backend === 'cpu' ? 'cpu' : `${d.backend}:${d.index ?? 0}`);
    if (spec !== 'cpu' && !out.some((o) => o.spec === spec)) out.push({ spec, info: d });
  }
  out.push({ spec: 'cpu', info: devices.find((d) => d.backend === 'cpu') });
  return out;
}

/** Ranking of device types for 'auto', as the engine ranks them: discrete > integrated > virtual > others. */
function rank(d: DeviceInfo | undefined): number {
  const t = d?.type;
  return t === 'discrete' ? 4 : t === 'integrated' ? 3 : t === 'virtual' ? 2 : 1;
}

/**
 * Picks the device for `requested`: `'auto'` tries the GPU devices the addon lists, best first (discrete,
 * integrated, virtual; then memory; software rasterisers are passed over: the CPU backend is faster), each
 * test-loaded as {@link probeDevice} does, and falls back to the CPU, recording why each was passed over; `'cpu'`
 * is the CPU; `'vulkan'` is the first usable Vulkan device, `'vulkan:N'` that one. An explicitly requested GPU that
 * is not usable throws {@link UnsupportedError} with the reason (and says to use `'auto'` or `'cpu'`).
 */
export async function chooseDevice(requested = 'auto', options: ProbeOptions = {}): Promise<DeviceChoice> {
  if (requested === 'cpu') return { device: 'cpu', reason: 'requested', skipped: [] };
  const skipped: Array<{ device: string; reason: string }> = [];
  const list = await listDevicesIsolated(options);
  if (list.error) {
    if (requested !== 'auto') throw new UnsupportedError(`device "${requested}" cannot be used (${list.error}); use device 'auto' (--device auto) or 'cpu'`);
    return { device: 'cpu', reason: `auto: ${list.error}; the CPU`, skipped: [{ device: compiledBackends().filter((b) => b !== 'cpu').join('/'), reason: list.error }] };
  }
  const specs = deviceSpecs(list.devices);
  const wantBackend = requested === 'auto' ? undefined : backendOf(requested);
  const exact = requested.includes(':') ? requested : undefined;
  const candidates = specs.filter((s) => s.spec !== 'cpu' && (!wantBackend || backendOf(s.spec) === wantBackend) && (!exact || s.spec === exact));
  if (exact && candidates.length === 0) candidates.push({ spec: exact });
  if (wantBackend && !exact && candidates.length === 0) candidates.push({ spec: `${wantBackend}:0` });
  if (requested === 'auto') {
    candidates.sort((a, b) => rank(b.info) - rank(a.info) || (b.info?.memoryBytes ?? 0) - (a.info?.memoryBytes ?? 0));
  }
  for (const c of candidates) {
    if (c.info && !c.info.usable) {
      skipped.push({ device: c.spec, reason: c.info.unusableReason || 'unusable' });
      continue;
    }
    if (requested === 'auto' && (c.info?.type === 'software' || c.info?.type === 'cpu')) {
      skipped.push({ device: c.spec, reason: `${c.info.name} is a software device (the CPU backend is faster)` });
      continue;
    }
    const p = await probeDevice(c.spec, options);
    if (p.usable) {
      return { device: c.spec, reason: `${requested}: ${c.spec} passed its test load${p.cached ? ' (remembered)' : ''}`, skipped };
    }
    skipped.push({ device: c.spec, reason: p.reason ?? 'unusable' });
  }
  if (requested !== 'auto') {
    const why = skipped.map((s) => `${s.device}: ${s.reason}`).join('; ') || 'no such device';
    throw new UnsupportedError(`device "${requested}" cannot be used (${why}); use device 'auto' (--device auto) to fall back to the CPU, or 'cpu'`);
  }
  if (candidates.length === 0) {
    const why = compiledBackends().every((b) => b === 'cpu') ? 'no GPU backend is compiled in' : list.notes.join('; ') || 'no GPU device found';
    return { device: 'cpu', reason: `auto: ${why}; the CPU`, skipped };
  }
  return { device: 'cpu', reason: 'auto: no usable GPU device; the CPU', skipped };
}

/**
 * The device spec to hand the engine for a load, after test-loading GPU devices in a child process. With no GPU
 * device listed, the request goes to the engine unchanged (it explains: no backend, no loader, no such device). A
 * fall-back to the CPU comes with `description` for `model.device` (`'cpu: vulkan:0: <reason>'`).
 * @internal
 */
export async function deviceForLoad(requested: string, options: ProbeOptions = {}): Promise<{ spec: string; description?: string }> {
  if (requested === 'cpu') return { spec: 'cpu' };
  // a CPU-only addon: nothing to test; the engine explains a request for a device it does not have
  if (compiledBackends().every((b) => b === 'cpu')) return { spec: requested };
  const choice = await chooseDevice(requested, options);
  if (choice.device !== 'cpu') return { spec: choice.device };
  const why = choice.skipped.map((k) => `${k.device}: ${k.reason}`).join('; ');
  return { spec: 'cpu', description: `cpu: ${why || choice.reason}` };
}
