// Shared pieces of the golden-image tests (../shared/golden, see its README): where the shared folder and the
// checkpoint cache are, building the seeded random-weight files once (cached, checked against the README's sha256),
// and comparing an image with its reference (pngcompare.py, PSNR >= 40 dB).
//
// Files are generated into $SDNODE_CACHE_DIR/golden or ~/.cache/sdnode/golden under a temporary name unique to the
// process and renamed into place, so concurrent test runs never see a half-written file; a sidecar stamp (size +
// mtime + hash) keeps later hash checks cheap.
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';

export const repoRoot = path.resolve(__dirname, '..', '..');
export const sharedDir = process.env.SDNODE_SHARED_DIR
  ? path.resolve(process.env.SDNODE_SHARED_DIR)
  : path.resolve(repoRoot, '..', 'shared');
export const goldenDir = path.join(sharedDir, 'golden');
const cacheRoot = process.env.SDNODE_CACHE_DIR
  ? path.resolve(process.env.SDNODE_CACHE_DIR)
  : path.join(os.homedir(), '.cache', 'sdnode');
export const cacheDir = path.join(cacheRoot, 'golden');
export const nativeCli = path.join(repoRoot, 'build', 'bin', process.platform === 'win32' ? 'sdn_cli.exe' : 'sdn_cli');
export const outDir = path.join(repoRoot, 'test', '.cache', 'golden-out');

/** Fields every reference case has (the golden README explains each). */
interface CaseBase {
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
}

/** A case of cases.json (SD 1.x). */
export interface GoldenCase extends CaseBase {
  rng: string;
  clip_skip: number;
}

/** A case of cases-wave2.json (model by ARCH, and the image-conditioning and adapter inputs). */
export interface Wave2Case extends CaseBase {
  model: string;
  rng?: string;
  clip_skip?: number;
  init?: string;
  mask?: string;
  strength?: number;
  lora_dir?: boolean;
  control?: string;
  control_image?: string;
  control_strength?: number;
  taesd?: string;
  prediction?: string;
  weight_type?: string;
}

/** Why the golden tests cannot run here (a visible skip message), or null. `casesFile` names the cases list. */
export function goldenSkipReason(casesFile = 'cases.json'): string | null {
  if (!fs.existsSync(path.join(goldenDir, casesFile)))
    return `golden tests SKIPPED: ${path.join(goldenDir, casesFile)} not found (set SDNODE_SHARED_DIR to the shared folder)`;
  const py = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (py.status !== 0) return 'golden tests SKIPPED: python3 with numpy is needed to build the reference checkpoints';
  if (!fs.existsSync(nativeCli)) return `golden tests SKIPPED: ${nativeCli} is not built (npm run build:native)`;
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

/** The file's sha256, trusting the sidecar stamp when size and mtime are unchanged. */
export function cachedHash(file: string): string {
  const stampFile = file + '.stamp.json';
  const st = fs.statSync(file);
  try {
    const s = JSON.parse(fs.readFileSync(stampFile, 'utf8'));
    if (s.size === st.size && s.mtimeMs === st.mtimeMs && typeof s.sha256 === 'string') return s.sha256;
  } catch {
    /* no stamp yet */
  }
  const sha256 = sha256File(file);
  const tmp = `${stampFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs, sha256 }));
  fs.renameSync(tmp, stampFile);
  return sha256;
}

/** Expected sha256 of ARCH's file, from the golden README (null when the README does not state one). */
export function expectedHash(arch: string): string | null {
  const readme = fs.readFileSync(path.join(goldenDir, 'README.md'), 'utf8');
  if (arch === 'sd15') {
    const m = /sha256 is\s*`([0-9a-f]{64})`/.exec(readme);
    return m ? m[1] : null;
  }
  const row = new RegExp('^\\|\\s*`' + arch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '`\\s*\\|.*\\|\\s*([0-9a-f]{64})\\s*\\|\\s*$', 'm');
  const m = row.exec(readme);
  return m ? m[1] : null;
}

/**
 * The cached random-weight file of ARCH (`sd15`, `sd15-inpaint`, `sd2`, `sdxl`, `lora-sd15`, `controlnet-sd15`,
 * `taesd`), generated when missing or when its hash differs from the README's. The file is named as the cases
 * expect (`ARCH-random.safetensors`; the SD 1.5 one keeps its historical name).
 */
export function ensureArch(arch: string): string {
  fs.mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, arch === 'sd15' ? 'sd15-random-1234.safetensors' : `${arch}-random.safetensors`);
  const expected = expectedHash(arch);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (fs.existsSync(file)) {
      const h = cachedHash(file);
      if (!expected || h === expected) return file;
      if (attempt === 1)
        throw new Error(`${file}: sha256 ${h} differs from the README's ${expected} even after regenerating (numpy version?)`);
    }
    const tmp = `${file}.${process.pid}.tmp`;
    const args =
      arch === 'sd15'
        ? [path.join(goldenDir, 'make_random_sd15.py'), tmp, '--seed', '1234']
        : [path.join(goldenDir, 'make_random_sd.py'), arch, tmp];
    const r = spawnSync('python3', args, { encoding: 'utf8', timeout: 15 * 60 * 1000 });
    if (r.status !== 0) {
      fs.rmSync(tmp, { force: true });
      throw new Error(`generating ${arch} failed: ${r.stderr}`);
    }
    fs.renameSync(tmp, file);
    fs.rmSync(file + '.stamp.json', { force: true });
  }
  return file;
}

/** The standard CLIP merges, unpacked once from ../shared/data. */
export function ensureMerges(): string {
  const out = path.join(cacheDir, 'clip-merges.txt');
  if (!fs.existsSync(out)) {
    fs.mkdirSync(cacheDir, { recursive: true });
    const gz = fs.readFileSync(path.join(sharedDir, 'data', 'clip-bpe-merges.txt.gz'));
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, zlib.gunzipSync(gz));
    fs.renameSync(tmp, out);
  }
  return out;
}

/** Compares OURS with the reference image of case `id`; returns pngcompare's line, throws below 40 dB. */
export function comparePng(ours: string, id: string, minPsnr = 40): string {
  const cmp = spawnSync(
    'python3',
    [path.join(goldenDir, 'pngcompare.py'), ours, path.join(goldenDir, `${id}.png`), '--min-psnr', String(minPsnr)],
    { encoding: 'utf8' },
  );
  if (cmp.status !== 0) throw new Error(`${id}: ${cmp.stdout}${cmp.stderr}`);
  return cmp.stdout.trim();
}

/** Runs the native CLI (build/bin/sdn_cli) with args; throws with its stderr on failure; returns seconds taken. */
export function runNativeCli(args: string[], env?: NodeJS.ProcessEnv): number {
  const t0 = Date.now();
  const g = spawnSync(nativeCli, args, { encoding: 'utf8', timeout: 15 * 60 * 1000, env: env ?? process.env });
  if (g.status !== 0) throw new Error(`sdn_cli failed (${g.status}, ${g.signal}): ${(g.stderr || '').slice(-3000)}`);
  return (Date.now() - t0) / 1000;
}

export interface CliDevice {
  id: string;
  usable: boolean;
  type: string;
  name: string;
  reason: string;
}

// Devices the native engine sees (`sdn_cli devices`), the CPU first; `notes` says why a compiled-in backend has none.
export function nativeDevices(): { devices: CliDevice[]; notes: string[] } {
  const g = spawnSync(nativeCli, ['devices'], { encoding: 'utf8', timeout: 60 * 1000 });
  if (g.status !== 0) throw new Error(`sdn_cli devices failed (${g.status}): ${(g.stderr || '').slice(-2000)}`);
  const devices: CliDevice[] = [];
  const notes: string[] = [];
  for (const line of g.stdout.split('\n')) {
    if (!line) continue;
    const f = line.split('\t');
    if (f[0] === '#') notes.push(f[1]);
    else devices.push({ id: f[0], usable: f[1] === '1', type: f[2], name: f[3], reason: f[4] || '' });
  }
  return { devices, notes };
}

/**
 * Where the golden cases run: 'cpu', then every usable device of the compiled-in GPU backends. Software devices
 * (Mesa lavapipe) take about a minute per case on the 2-core CI machine, so only the four SD 1.x cases run on them
 * by default (`softwareByDefault`); SDNODE_GOLDEN_SOFTWARE=1 runs every golden file on them, =0 none. Every device
 * left out is named with the reason, visibly.
 */
export function goldenTargets(what: string, opts: { softwareByDefault?: boolean } = {}): string[] {
  const { devices, notes } = nativeDevices();
  const env = process.env.SDNODE_GOLDEN_SOFTWARE;
  const software = env === '1' || (env !== '0' && !!opts.softwareByDefault);
  const how = env === '0' ? 'SDNODE_GOLDEN_SOFTWARE=0' : 'these cases run on software devices only with SDNODE_GOLDEN_SOFTWARE=1 (about a minute each on 2 cores)';
  for (const d of devices.filter((x) => x.id !== 'cpu' && x.usable && x.type === 'software' && !software))
    // eslint-disable-next-line no-console
    console.warn(`${what}: ${d.id} (${d.name}) SKIPPED: software device (${how})`);
  for (const d of devices.filter((x) => x.id !== 'cpu' && !x.usable))
    // eslint-disable-next-line no-console
    console.warn(`${what}: ${d.id} (${d.name}) SKIPPED: unusable: ${d.reason}`);
  const gpus = devices.filter((d) => d.id !== 'cpu' && d.usable && (d.type !== 'software' || software));
  if (gpus.length === 0)
    // eslint-disable-next-line no-console
    console.warn(`${what}: no usable GPU device to run on (software ones need SDNODE_GOLDEN_SOFTWARE=1), GPU golden cases SKIPPED${notes.length ? ` (${notes.join('; ')})` : ''}`);
  return ['cpu', ...gpus.map((d) => d.id)];
}

/** Test name and output file suffix for a golden case on a device ('' on the CPU). */
export function onDevice(device: string): { label: string; suffix: string } {
  return device === 'cpu' ? { label: '', suffix: '' } : { label: ` on ${device}`, suffix: `-${device.replace(':', '')}` };
}
