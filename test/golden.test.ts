// Golden-image tests: our SD1.x pipeline against the reference engine's images for the random-weight reference
// checkpoint (../shared/golden, see its README). Pass: PSNR >= 40 dB per case (pngcompare.py).
//
// The 2.1 GB checkpoint is generated once with ../shared/golden/make_random_sd15.py into
// $SDNODE_CACHE_DIR/golden or ~/.cache/sdnode/golden, and re-generated only if missing or its sha256 differs from
// the README's; a sidecar stamp (size + mtime + hash) keeps later checks cheap.
// The shared folder is ../shared relative to the repository (override: SDNODE_SHARED_DIR). Without it, or
// without python3 + numpy, the cases are skipped with a visible message.
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';

const repoRoot = path.resolve(__dirname, '..');
const sharedDir = process.env.SDNODE_SHARED_DIR
  ? path.resolve(process.env.SDNODE_SHARED_DIR)
  : path.resolve(repoRoot, '..', 'shared');
const goldenDir = path.join(sharedDir, 'golden');
const cacheRoot = process.env.SDNODE_CACHE_DIR
  ? path.resolve(process.env.SDNODE_CACHE_DIR)
  : path.join(os.homedir(), '.cache', 'sdnode');
const cacheDir = path.join(cacheRoot, 'golden');
const cli = path.join(repoRoot, 'build', 'bin', process.platform === 'win32' ? 'sdn_cli.exe' : 'sdn_cli');
const outDir = path.join(repoRoot, 'test', '.cache', 'golden-out');

interface GoldenCase {
  id: string;
  prompt: string;
  negative: string;
  width: number;
  height: number;
  sampler: string;
  scheduler: string;
  steps: number;
  cfg: number;
  seed: number;
  rng: string;
  clip_skip: number;
}

function skipReason(): string | null {
  if (!fs.existsSync(path.join(goldenDir, 'cases.json')))
    return `golden tests SKIPPED: ${goldenDir} not found (set SDNODE_SHARED_DIR to the shared folder)`;
  const py = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (py.status !== 0) return 'golden tests SKIPPED: python3 with numpy is needed to build the reference checkpoint';
  if (!fs.existsSync(cli)) return `golden tests SKIPPED: ${cli} is not built (npm run build:native)`;
  return null;
}

function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(16 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

// Returns the checkpoint's hash, trusting the stamp when size and mtime are unchanged.
function checkpointHash(file: string): string {
  const stampFile = file + '.stamp.json';
  const st = fs.statSync(file);
  try {
    const s = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    if (s.size === st.size && s.mtimeMs === st.mtimeMs && typeof s.sha256 === 'string') return s.sha256;
  } catch {
    /* no stamp yet */
  }
  const sha256 = sha256File(file);
  fs.writeFileSync(stampFile, JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs, sha256 }));
  return sha256;
}

function ensureCheckpoint(): string {
  const readme = fs.readFileSync(path.join(goldenDir, 'README.md'), 'utf8');
  const m = /sha256 is\s*`([0-9a-f]{64})`/.exec(readme);
  const expected = m ? m[1] : null;
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, 'sd15-random-1234.safetensors');
  for (let attempt = 0; attempt < 2; attempt++) {
    if (fs.existsSync(file)) {
      const h = checkpointHash(file);
      if (!expected || h === expected) return file;
      if (attempt === 1)
        throw new Error(`${file}: sha256 ${h} differs from the README's ${expected} even after regenerating (numpy version?)`);
    }
    const tmp = file + '.tmp';
    const r = spawnSync('python3', [path.join(goldenDir, 'make_random_sd15.py'), tmp, '--seed', '1234'], {
      encoding: 'utf8',
      timeout: 15 * 60 * 1000,
    });
    if (r.status !== 0) throw new Error(`make_random_sd15.py failed: ${r.stderr}`);
    fs.renameSync(tmp, file);
    try {
      fs.unlinkSync(file + '.stamp.json');
    } catch {
      /* none */
    }
  }
  return file;
}

function ensureMerges(): string {
  const out = path.join(cacheDir, 'clip-merges.txt');
  if (!fs.existsSync(out)) {
    fs.mkdirSync(cacheDir, { recursive: true });
    const gz = fs.readFileSync(path.join(sharedDir, 'data', 'clip-bpe-merges.txt.gz'));
    fs.writeFileSync(out + '.tmp', zlib.gunzipSync(gz));
    fs.renameSync(out + '.tmp', out);
  }
  return out;
}

const reason = skipReason();
if (reason) {
  // eslint-disable-next-line no-console
  console.warn(reason);
  test.skip(reason, () => undefined);
} else {
  const cases: GoldenCase[] = JSON.parse(fs.readFileSync(path.join(goldenDir, 'cases.json'), 'utf8'));
  describe('golden SD1.x images (PSNR >= 40 dB vs the reference engine)', () => {
    let model = '';
    let merges = '';
    beforeAll(() => {
      model = ensureCheckpoint();
      merges = ensureMerges();
      fs.mkdirSync(outDir, { recursive: true });
    }, 20 * 60 * 1000);

    for (const c of cases) {
      test(
        c.id,
        () => {
          const ours = path.join(outDir, `${c.id}.png`);
          const args = [
            'generate', '--model', model, '--tokenizer', merges, '--prompt', c.prompt, '--negative', c.negative,
            '--width', String(c.width), '--height', String(c.height), '--steps', String(c.steps),
            '--cfg', String(c.cfg), '--sampler', c.sampler, '--scheduler', c.scheduler, '--seed', String(c.seed),
            '--rng', c.rng, '--clip-skip', String(c.clip_skip), '--output', ours,
          ];
          const t0 = Date.now();
          const g = spawnSync(cli, args, { encoding: 'utf8', timeout: 15 * 60 * 1000 });
          if (g.status !== 0) throw new Error(`sdn_cli failed (${g.status}, ${g.signal}): ${g.stderr.slice(-3000)}`);
          const secs = (Date.now() - t0) / 1000;
          const cmp = spawnSync(
            'python3',
            [path.join(goldenDir, 'pngcompare.py'), ours, path.join(goldenDir, `${c.id}.png`), '--min-psnr', '40'],
            { encoding: 'utf8' },
          );
          // eslint-disable-next-line no-console
          console.log(`${c.id}: ${cmp.stdout.trim()} (${secs.toFixed(1)} s)`);
          if (cmp.status !== 0) throw new Error(`${c.id}: ${cmp.stdout}${cmp.stderr}`);
        },
        20 * 60 * 1000,
      );
    }
  });
}
