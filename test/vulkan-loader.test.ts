// The Vulkan loader is opened at run time: without it the same binary lists no Vulkan device, says why, and an
// explicit `--device vulkan` fails with an error that names the CPU device instead of crashing.
// SDN_VULKAN_LOADER points the engine at a loader library name that does not exist.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { nativeCli, nativeDevices } from './helpers/golden';
import { describeTiny, tinyModel } from './helpers/tiny';

const built = fs.existsSync(nativeCli);
const hasVulkan = built && nativeDevices().devices.some((d) => d.id.startsWith('vulkan')) ||
  (built && nativeDevices().notes.some((n) => n.startsWith('vulkan')));

if (!hasVulkan) {
  // eslint-disable-next-line no-console
  console.warn(`vulkan-loader tests SKIPPED: ${built ? 'the Vulkan backend is not compiled in' : `${nativeCli} is not built`}`);
  test.skip('Vulkan backend not compiled in', () => undefined);
} else {
  const env = { ...process.env, SDN_VULKAN_LOADER: '/nonexistent/libvulkan.so.1' };
  test('without a Vulkan loader: no Vulkan devices, a note saying why', () => {
    const g = spawnSync(nativeCli, ['devices'], { encoding: 'utf8', env });
    expect(g.status).toBe(0);
    expect(g.stdout).toMatch(/^cpu\t1\t/);
    expect(g.stdout).not.toMatch(/^vulkan:/m);
    expect(g.stdout).toContain('vulkan: no Vulkan loader found (/nonexistent/libvulkan.so.1)');
  });
  describeTiny('explicit device without a loader', () => {
    test('--device vulkan is an Unsupported error naming the CPU device; auto runs on the CPU', () => {
      const tiny = tinyModel();
      const out = `${require('os').tmpdir()}/sdnode-noloader-${process.pid}.png`;
      const base = ['generate', '--model', tiny.safetensors, '--tokenizer', tiny.merges, '--prompt', 'x', '--width', '64', '--height', '64', '--steps', '1', '--output', out];
      const g = spawnSync(nativeCli, [...base, '--device', 'vulkan'], { encoding: 'utf8', env });
      expect(g.status).toBe(1);
      expect(g.stderr).toContain('error (Unsupported)');
      expect(g.stderr).toContain('no Vulkan loader found');
      expect(g.stderr).toContain("'cpu'");
      const a = spawnSync(nativeCli, [...base, '--device', 'auto'], { encoding: 'utf8', env });
      expect(a.status).toBe(0);
      expect(a.stderr).toContain('device: cpu: ');
      fs.rmSync(out, { force: true });
    });
  });
}
