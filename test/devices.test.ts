// Device selection through the public API: the `device` / `vramBudget` options, `model.device`, the devices of
// getSystemInfo(), and the same tiny model generating on every usable device of every compiled-in backend with the
// same image as on the CPU (within a small per-pixel tolerance: GPU kernels round differently).
import { getSystemInfo, InvalidOptionError, loadModel, UnsupportedError } from '../lib/index';
import type { GenerateOptions } from '../lib/index';
import { describeTiny, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

const cheap: GenerateOptions = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, cfgScale: 3, seed: 7 };

test('getSystemInfo lists the CPU first, then every device of the compiled-in backends', () => {
  const s = getSystemInfo();
  expect(s.devices.length).toBeGreaterThanOrEqual(1);
  expect(s.devices[0]).toMatchObject({ id: 'cpu', backend: 'cpu', type: 'cpu', usable: true });
  expect(s.devices[0].memoryBytes).toBeGreaterThan(0);
  for (const d of s.devices) {
    expect(s.backends).toContain(d.backend);
    if (!d.usable) expect(d.unusableReason).toBeTruthy();
    // Vulkan devices say whether the cooperative-matrix GEMM would run on them, and why not
    if (d.backend === 'vulkan') expect(d.cooperativeMatrixKernel).toMatch(/^(not used: .+|candidate.*)$/);
    else expect(d.cooperativeMatrixKernel).toBeUndefined();
  }
  // a compiled-in backend without devices says why
  for (const b of s.backends)
    if (b !== 'cpu' && !s.devices.some((d) => d.backend === b)) expect(s.backendNotes.join('\n')).toContain(b);
});

describeTiny('device option', () => {
  let tiny: TinyModel;
  beforeAll(() => {
    tiny = tinyModel();
  });

  test('invalid device and vramBudget values are InvalidOptionErrors naming the option', async () => {
    for (const device of ['gpu', 'vulkan:', 'vulkan:-1', 'cuda:0', 3])
      await expect(loadModel(tiny.safetensors, { device: device as never })).rejects.toMatchObject({
        constructor: InvalidOptionError,
        option: 'device',
      });
    for (const vramBudget of ['lots', -1, 1.5, '6 parsecs'])
      await expect(loadModel(tiny.safetensors, { vramBudget: vramBudget as never })).rejects.toMatchObject({
        constructor: InvalidOptionError,
        option: 'vramBudget',
      });
  });

  test("'cpu' runs on the CPU; 'auto' says where it runs and why", async () => {
    const cpu = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, device: 'cpu', vramBudget: '6GB' });
    expect(cpu.device).toBe('cpu: requested');
    await cpu.dispose();
    const auto = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    expect(auto.device).toMatch(/^(cpu: .+|[a-z]+:\d+ .+)$/);
    if (auto.device.startsWith('cpu')) expect(auto.device.length).toBeGreaterThan('cpu: '.length);
    await auto.dispose();
  });

  test('a device that does not exist is an UnsupportedError saying what to use instead', async () => {
    const err = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, device: 'vulkan:99' }).catch((e) => e);
    expect(err).toBeInstanceOf(UnsupportedError);
    expect(String(err.message)).toMatch(/vulkan:99/);
    expect(String(err.message)).toMatch(/cpu/);
  });

  const gpus = getSystemInfo().devices.filter((d) => d.backend !== 'cpu' && d.usable);
  if (gpus.length === 0) {
    // eslint-disable-next-line no-console
    console.warn(`device tests SKIPPED for GPU backends: no usable GPU device (${getSystemInfo().backendNotes.join('; ') || 'only the CPU backend is compiled in'})`);
    test.skip('same image on every usable GPU device as on the CPU (no GPU device here)', () => undefined);
  }
  for (const d of gpus) {
    test(`same image on ${d.id} (${d.name}) as on the CPU`, async () => {
      const cpu = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, device: 'cpu' });
      const ref = (await cpu.generate(cheap)).images[0].data;
      await cpu.dispose();
      const gpu = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, device: d.id as never });
      expect(gpu.device.startsWith(d.id)).toBe(true);
      const got = (await gpu.generate(cheap)).images[0].data;
      await gpu.dispose();
      expect(got.length).toBe(ref.length);
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
      expect(worst).toBeLessThanOrEqual(4);
    });
  }
});
