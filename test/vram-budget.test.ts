// vramBudget through the public API: the tiny model on a Vulkan device under a budget far below its weights
// (55 MB of f32 weights, budget 24 MiB: 18 MiB resident, a 6 MiB streaming area, the rest streamed from host
// memory) gives the same image as without a budget, with no operation falling back to the CPU and the device's
// weight memory within the budget. The budgeted run happens in a child process with SDN_DEBUG=1, whose stderr
// carries the CPU-fallback lines (none expected) and the backend's streaming summary.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { getSystemInfo, loadModel } from '../lib/index';
import type { GenerateOptions } from '../lib/index';
import { ensureDist } from './helpers/dist';
import { describeTiny, repoRoot, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

const cheap: GenerateOptions = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, cfgScale: 3, seed: 7 };
const budget = 24 * 1024 * 1024;
const dist = path.join(repoRoot, 'dist', 'index.js');

describeTiny('vramBudget streams weights', () => {
  const vk = getSystemInfo().devices.filter((d) => d.backend === 'vulkan' && d.usable);
  if (vk.length === 0) {
    // eslint-disable-next-line no-console
    console.warn(`vramBudget streaming tests SKIPPED: no usable Vulkan device (${getSystemInfo().backendNotes.join('; ') || 'the Vulkan backend is not compiled in'})`);
    test.skip('same image under a vramBudget as without (no Vulkan device here)', () => undefined);
    return;
  }
  const dev = vk[0];
  let tiny: TinyModel;
  let tmp: string;
  beforeAll(() => {
    tiny = tinyModel();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-vram-'));
    ensureDist();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test(`same image on ${dev.id} (${dev.name}) with vramBudget 24 MiB as without; no CPU fallback; weights within the budget`, async () => {
    const full = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges, device: dev.id as never });
    const ref = Buffer.from((await full.generate(cheap)).images[0].data);
    await full.dispose();

    const out = path.join(tmp, 'budget.raw');
    const script = `
      const fs = require('fs');
      const { loadModel } = require(${JSON.stringify(dist)});
      (async () => {
        const m = await loadModel(${JSON.stringify(tiny.safetensors)}, { tokenizerPath: ${JSON.stringify(tiny.merges)}, device: ${JSON.stringify(dev.id)}, vramBudget: '24MiB' });
        const r = await m.generate(${JSON.stringify(cheap)});
        fs.writeFileSync(${JSON.stringify(out)}, Buffer.from(r.images[0].data));
        await m.dispose();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, SDN_DEBUG: '1' }, timeout: 8 * 60 * 1000 });
    expect(r.stderr).not.toMatch(/running it on the CPU/);
    expect(r.status).toBe(0);
    const got = fs.readFileSync(out);
    expect(got.length).toBe(ref.length);
    expect(got.equals(ref)).toBe(true);

    // "sdnode: vulkan:0 vramBudget B bytes: peak device weights P bytes (streaming area A); streamed S bytes in C copies (F prefetched)"
    const m = /vramBudget (\d+) bytes: peak device weights (\d+) bytes \(streaming area (\d+)\); streamed (\d+) bytes in (\d+) copies \((\d+) prefetched\)/.exec(r.stderr);
    expect(m).not.toBeNull();
    // eslint-disable-next-line no-console
    console.log(`${dev.id}: ${(m as RegExpExecArray)[0]}`);
    const [, b, peak, area, streamed, , prefetched] = (m as RegExpExecArray).map(Number);
    expect(b).toBe(budget);
    expect(area).toBe(budget / 4);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(budget);
    expect(streamed).toBeGreaterThan(20 * 1024 * 1024); // most of the 55 MB of weights came from host memory
    expect(prefetched).toBeGreaterThan(0);
  });
});
