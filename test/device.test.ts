// Device choice at run time: GPU backends are test-loaded in a child process (a crashing or hanging driver takes
// down the child, not us), verdicts are remembered per device, addon and driver, and 'auto' falls back to the next
// device and finally the CPU with the reasons. The GPU side is played by a stand-in addon (a JavaScript module
// loaded through SDNODE_BINARY, as the real loader does) whose probeDevice crashes, hangs, fails or succeeds.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repoRoot } from './helpers/tiny';

jest.setTimeout(120_000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-device-'));
const fake = path.join(tmp, 'fake-addon.js');
const log = path.join(tmp, 'probes.log');
const icd = path.join(tmp, 'fake_icd.json');
fs.writeFileSync(
  fake,
  `const fs = require('fs');
module.exports = {
  compiledBackends: () => ['cpu', 'vulkan'],
  getSystemInfo: () => {
    fs.appendFileSync(process.env.FAKE_PROBE_LOG, 'list ' + process.pid + '\\n');
    const mode = JSON.parse(process.env.FAKE_PROBE_MODES || '{}').list || 'ok';
    if (mode === 'segv') process.kill(process.pid, 'SIGSEGV');
    return info();
  },
};
const info = () => ({ version: 'fake', simd: 'scalar', threads: 1, physicalCores: 1, backends: ['cpu', 'vulkan'], backendNotes: [],
    devices: [{ id: 'cpu', backend: 'cpu', index: 0, name: 'CPU', type: 'cpu', usable: true, memoryBytes: 1e9 },
              { id: 'vulkan:0', backend: 'vulkan', index: 0, name: 'First GPU', type: 'discrete', usable: true, memoryBytes: 8e9 },
              { id: 'vulkan:1', backend: 'vulkan', index: 1, name: 'Second GPU', type: 'integrated', usable: true, memoryBytes: 2e9 },
              { id: 'vulkan:2', backend: 'vulkan', index: 2, name: 'llvmpipe', type: 'software', usable: true, memoryBytes: 1e9 }] });
Object.assign(module.exports, {
  Model: class {},
  AbortHandle: class {},
  probeDevice(spec) {
    fs.appendFileSync(process.env.FAKE_PROBE_LOG, spec + ' ' + process.pid + '\\n');
    const mode = JSON.parse(process.env.FAKE_PROBE_MODES || '{}')[spec] || 'ok';
    if (mode === 'segv') process.kill(process.pid, 'SIGSEGV');
    if (mode === 'abort') process.abort();
    if (mode === 'hang') for (;;) {}
    if (mode === 'fail') return { ok: false, reason: 'vkCreateDevice failed: VK_ERROR_INITIALIZATION_FAILED' };
    if (mode === 'throw') throw new Error('driver exploded');
    return { ok: true, name: spec + ' (fake)', driver: '1.2.3' };
  },
});
`,
);
fs.writeFileSync(icd, '{"ICD": {"library_path": "libfake.so"}}');

const saved = { ...process.env };
let cacheN = 0;
function freshCache(): string {
  const d = path.join(tmp, `cache-${cacheN++}`);
  process.env.SDNODE_CACHE_DIR = d;
  return d;
}
function modes(m: Record<string, string>): void {
  process.env.FAKE_PROBE_MODES = JSON.stringify(m);
}
/** The device probes the stand-in addon saw (the 'list ...' lines are device enumerations). */
function probes(): string[] {
  return allCalls().filter((l) => !l.startsWith('list '));
}
function allCalls(): string[] {
  return fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : [];
}

process.env.SDNODE_BINARY = fake;
process.env.FAKE_PROBE_LOG = log;
process.env.VK_ICD_FILENAMES = icd;
afterAll(() => {
  for (const k of ['SDNODE_BINARY', 'FAKE_PROBE_LOG', 'FAKE_PROBE_MODES', 'VK_ICD_FILENAMES', 'SDNODE_CACHE_DIR']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

// eslint-disable-next-line @typescript-eslint/no-require-imports
const device = require('../lib/device') as typeof import('../lib/device');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { probeDevice: seam, loadBinding } = require('../lib/binding') as typeof import('../lib/binding');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { UnsupportedError } = require('../lib/errors') as typeof import('../lib/errors');

const distReady = fs.existsSync(path.join(repoRoot, 'dist', 'binding.js'));
if (!distReady) console.warn('device tests: SKIPPED: dist/binding.js is missing (the child process runs compiled JavaScript; npm run build)');
const describeDist = distReady ? describe : describe.skip;

describeDist('test-load in a child process', () => {
  test('a driver that crashes (SIGSEGV) kills the child only; auto falls back to the next GPU', async () => {
    freshCache();
    modes({ 'vulkan:0': 'segv', 'vulkan:1': 'ok' });
    const before = probes().length;
    const choice = await device.chooseDevice('auto');
    expect(choice.device).toBe('vulkan:1');
    expect(choice.skipped).toEqual([{ device: 'vulkan:0', reason: expect.stringMatching(/test load crashed.*SIGSEGV/) }]);
    const ran = probes().slice(before);
    expect(ran.map((l) => l.split(' ')[0])).toEqual(['vulkan:0', 'vulkan:1']);
    for (const l of ran) expect(Number(l.split(' ')[1])).not.toBe(process.pid); // probed in other processes
  });

  test('verdicts are remembered: no second child process for the same device, addon and driver', async () => {
    const cache = freshCache();
    modes({ 'vulkan:0': 'abort', 'vulkan:1': 'ok' });
    await device.chooseDevice('auto');
    const n = probes().length;
    const again = await device.chooseDevice('auto');
    expect(probes().length).toBe(n);
    expect(again.device).toBe('vulkan:1');
    expect(again.reason).toMatch(/remembered/);
    expect(again.skipped[0].reason).toMatch(/SIGABRT/);
    const p = await device.probeDevice('vulkan:0');
    expect(p).toMatchObject({ usable: false, cached: true });
    const keys = Object.keys(JSON.parse(fs.readFileSync(path.join(cache, 'device-probes.json'), 'utf8')) as object);
    expect(keys.filter((k) => k.startsWith('list|')).length).toBe(1); // the device list
    expect(keys.filter((k) => !k.startsWith('list|')).length).toBe(2); // one verdict per device tried
    // refresh: probe again
    await device.probeDevice('vulkan:0', { refresh: true });
    expect(probes().length).toBe(n + 1);
  });

  test('devices are enumerated in a child process too (enumeration loads the drivers), never in this one', async () => {
    freshCache();
    modes({ 'vulkan:0': 'ok' });
    const before = allCalls().length;
    expect(await device.deviceForLoad('auto')).toEqual({ spec: 'vulkan:0' });
    const calls = allCalls().slice(before);
    expect(calls.filter((l) => l.startsWith('list ')).length).toBe(1);
    for (const l of calls) expect(Number(l.split(' ')[1])).not.toBe(process.pid);
    // remembered: the next load starts no process at all
    const n = allCalls().length;
    expect(await device.deviceForLoad('auto')).toEqual({ spec: 'vulkan:0' });
    expect(allCalls().length).toBe(n);
  });

  test('an enumeration that crashes leaves the CPU, with the reason', async () => {
    freshCache();
    modes({ list: 'segv' });
    const d = await device.deviceForLoad('auto');
    expect(d.spec).toBe('cpu');
    expect(d.description).toMatch(/listing the vulkan devices failed: the test load crashed.*SIGSEGV/);
    await expect(device.deviceForLoad('vulkan:0')).rejects.toBeInstanceOf(UnsupportedError);
  });

  test('sdnode system survives a driver that crashes on enumeration, and says so', async () => {
    freshCache();
    modes({ list: 'segv' });
    const r = await device.systemInfoIsolated();
    expect(r.error).toMatch(/listing the vulkan devices failed: the test load crashed.*SIGSEGV/);
    expect(r.info.devices.map((d) => d.id)).toEqual(['cpu']);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spawnSync } = require('child_process') as typeof import('child_process');
    const cli = spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'cli', 'cli.js'), 'system'], { encoding: 'utf8', env: process.env });
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(/auto\s+cpu \(auto: listing the vulkan devices failed: the test load crashed/);
    modes({});
    expect((await device.systemInfoIsolated()).info.devices.map((d) => d.id)).toEqual(['cpu', 'vulkan:0', 'vulkan:1', 'vulkan:2']);
  });

  test('a driver change (ICD manifest updated) invalidates the remembered verdict', async () => {
    freshCache();
    modes({ 'vulkan:0': 'fail' });
    expect((await device.probeDevice('vulkan:0')).usable).toBe(false);
    const n = probes().length;
    expect((await device.probeDevice('vulkan:0')).cached).toBe(true);
    const later = new Date(Date.now() + 10_000);
    fs.writeFileSync(icd, '{"ICD": {"library_path": "libfake.so", "api_version": "1.3.0"}}');
    fs.utimesSync(icd, later, later);
    modes({ 'vulkan:0': 'ok' });
    const p = await device.probeDevice('vulkan:0');
    expect(p).toMatchObject({ usable: true, cached: false, name: 'vulkan:0 (fake)', driver: '1.2.3' });
    expect(probes().length).toBe(n + 1);
  });

  test('a hang is cut off after timeoutMs', async () => {
    freshCache();
    modes({ 'vulkan:0': 'hang', 'vulkan:1': 'fail' });
    const t0 = Date.now();
    const choice = await device.chooseDevice('auto', { timeoutMs: 1500 });
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(choice.device).toBe('cpu');
    expect(choice.reason).toMatch(/no usable GPU/);
    expect(choice.skipped).toEqual([
      { device: 'vulkan:0', reason: expect.stringMatching(/did not finish within 1500 ms/) },
      { device: 'vulkan:1', reason: 'vkCreateDevice failed: VK_ERROR_INITIALIZATION_FAILED' },
      { device: 'vulkan:2', reason: 'llvmpipe is a software device (the CPU backend is faster)' },
    ]);
  });

  test('loadModel hands the engine the device that passed, or the CPU with the reasons for model.device', async () => {
    freshCache();
    modes({ 'vulkan:0': 'fail', 'vulkan:1': 'ok' });
    expect(await device.deviceForLoad('auto')).toEqual({ spec: 'vulkan:1' });
    expect(await device.deviceForLoad('cpu')).toEqual({ spec: 'cpu' });
    freshCache();
    modes({ 'vulkan:0': 'segv', 'vulkan:1': 'fail' });
    const d = await device.deviceForLoad('auto');
    expect(d.spec).toBe('cpu');
    expect(d.description).toMatch(/^cpu: vulkan:0: the test load crashed.*SIGSEGV.*; vulkan:1: vkCreateDevice failed.*; vulkan:2: llvmpipe is a software device/);
    await expect(device.deviceForLoad('vulkan:1')).rejects.toBeInstanceOf(UnsupportedError);
  });

  test('an explicitly requested GPU that is unusable is an UnsupportedError with the reason; cpu always works', async () => {
    freshCache();
    modes({ 'vulkan:0': 'throw', 'vulkan:1': 'ok' });
    const err = await device.chooseDevice('vulkan:0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as Error).message).toMatch(/vulkan:0.*driver exploded.*'auto'/);
    expect((await device.chooseDevice('vulkan')).device).toBe('vulkan:1');
    expect(await device.chooseDevice('cpu')).toEqual({ device: 'cpu', reason: 'requested', skipped: [] });
  });
});

describe('the native seam', () => {
  test('an addon without probeDevice has the CPU only: "no GPU backends compiled in"', () => {
    const cpuOnly = { getSystemInfo: () => ({}), Model: class {} } as unknown as import('../lib/binding').NativeBinding;
    expect(seam('cpu', cpuOnly)).toMatchObject({ ok: true });
    expect(seam('vulkan:0', cpuOnly)).toEqual({ ok: false, reason: expect.stringMatching(/no GPU backends compiled in/) });
  });

  test("the real addon's probeDevice: the CPU passes its test computation; a GPU not compiled in is refused with the reason", () => {
    let real;
    try {
      real = loadBinding(repoRoot);
    } catch (err) {
      console.warn(`SKIPPED: the native addon is not built (${(err as Error).message.split('\n')[0]})`);
      return;
    }
    expect(typeof real.probeDevice).toBe('function');
    expect(seam('cpu', real)).toMatchObject({ ok: true, device: 'cpu' });
    const gpu = seam('vulkan:0', real);
    if (!real.getSystemInfo().backends.includes('vulkan')) {
      expect(gpu).toMatchObject({ ok: false, reason: expect.stringMatching(/not available: this build has the backends cpu/) });
    } else {
      expect(typeof gpu.ok).toBe('boolean'); // a machine with the Vulkan backend: either verdict, never a throw
    }
  });

  test('driverFingerprint changes with the ICD manifests', () => {
    const a = device.driverFingerprint('vulkan');
    fs.writeFileSync(icd, '{"ICD": {"library_path": "libother.so", "x": 1}}');
    expect(device.driverFingerprint('vulkan')).not.toBe(a);
    expect(device.driverFingerprint('cpu')).toBe('cpu');
  });
});
