// Tiny SD1 models for tests, written by scripts/make-tiny-model.js (seeded random weights, SD1 topology, small
// widths) into test/.cache/tiny-model/<hash of the script>/ once and reused by every test file and later runs.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

export const repoRoot = path.resolve(__dirname, '..', '..');
const script = path.join(repoRoot, 'scripts', 'make-tiny-model.js');

export interface TinyModel {
  safetensors: string;
  gguf: string;
  diffusers: string;
  merges: string;
  dir: string;
}

/** Why tiny-model tests cannot run here, or null. */
export function tinySkipReason(): string | null {
  if (!fs.existsSync(script)) return `SKIPPED: ${script} is missing (tiny models cannot be generated)`;
  return null;
}

/** Creates (once) and returns the tiny model files. Synchronous; takes a few seconds the first time. */
export function tinyModel(): TinyModel {
  const key = crypto.createHash('sha256').update(fs.readFileSync(script)).digest('hex').slice(0, 12);
  const dir = path.join(repoRoot, 'test', '.cache', 'tiny-model', key);
  const files: TinyModel = {
    dir,
    safetensors: path.join(dir, 'tiny-sd1.safetensors'),
    gguf: path.join(dir, 'tiny-sd1.gguf'),
    diffusers: path.join(dir, 'tiny-sd1-diffusers'),
    merges: path.join(dir, 'tiny-sd1-merges.txt'),
  };
  const stamp = path.join(dir, 'complete');
  if (!fs.existsSync(stamp)) {
    // Build in a private folder, then rename: concurrent test processes never see half-written files.
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { makeTinyModel } = require(script) as { makeTinyModel: (o: { outDir: string }) => unknown };
    makeTinyModel({ outDir: tmp });
    fs.writeFileSync(path.join(tmp, 'complete'), new Date().toISOString());
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    try {
      fs.renameSync(tmp, dir);
    } catch {
      fs.rmSync(tmp, { recursive: true, force: true }); // another process won the race
    }
    // Models from older versions of the script are dead weight (~200 MB each): remove them.
    for (const old of fs.readdirSync(path.dirname(dir))) {
      if (old !== key && /^[0-9a-f]{12}$/.test(old)) fs.rmSync(path.join(path.dirname(dir), old), { recursive: true, force: true });
    }
  }
  return files;
}

/** `describe` that shows the skip reason in its title when the tiny models are unavailable. */
export function describeTiny(name: string, fn: () => void): void {
  const reason = tinySkipReason();
  if (reason) {
    // eslint-disable-next-line no-console
    console.warn(`${name}: ${reason}`);
    describe.skip(`${name} (${reason})`, fn);
  } else {
    describe(name, fn);
  }
}
