// Installing the package as a user does, on a machine without a compiler: `npm pack`, then `npm install` of the
// tarball into a fresh project with cmake, the C/C++ compilers and make removed from PATH, then `npx sdnode
// generate` on a tiny model and the public API. The prebuilt binary for this platform must be the one used.
import { spawnSync, type SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describeTiny, repoRoot, tinyModel } from './helpers/tiny';

jest.setTimeout(10 * 60 * 1000);

const TOOLCHAIN = /^(cmake|ccmake|cpack|ctest|make|gmake|ninja|cc|c\+\+|gcc|g\+\+|clang|clang\+\+|cpp|ld|.*-linux-gnu-(gcc|g\+\+|cc|c\+\+)(-\d+)?|(gcc|g\+\+|cpp|clang|clang\+\+)-[\d.]+)$/;
const platformDir = path.join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);
const prebuilt = path.join(platformDir, 'sdnode.napi.glibc.node');
const built = path.join(repoRoot, 'build', 'Release', 'sdnode.node');

function skipReason(): string | null {
  if (process.platform !== 'linux') return `SKIPPED: the no-compiler install test runs on Linux only (this is ${process.platform})`;
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'index.js'))) return 'SKIPPED: dist/ is not built (run npm run build)';
  if (!fs.existsSync(prebuilt) && !fs.existsSync(built)) return `SKIPPED: neither ${prebuilt} nor ${built} exists (run npm run build)`;
  return null;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-pack-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A PATH holding every program of the current PATH except cmake, make, ninja and the C/C++ compilers. */
function pathWithoutToolchain(): string {
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (TOOLCHAIN.test(n) || fs.existsSync(path.join(bin, n))) continue;
      try {
        fs.symlinkSync(path.join(dir, n), path.join(bin, n));
      } catch {
        /* name clash or odd entry */
      }
    }
  }
  return bin;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout = 300_000): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout });
}

function describeIf(name: string, fn: () => void): void {
  const reason = skipReason();
  if (reason) {
    // eslint-disable-next-line no-console
    console.warn(`${name}: ${reason}`);
    describe.skip(`${name} (${reason})`, fn);
  } else describeTiny(name, fn);
}

describeIf('npm install without a compiler', () => {
  let app: string;
  let env: NodeJS.ProcessEnv;
  let tarball: string;

  beforeAll(() => {
    // The package ships the prebuilt binary: make this platform's from the current build when it is missing or
    // older than the build (same CMake options; `npm run prebuilds` makes both Linux ones for a release).
    if (!fs.existsSync(prebuilt) || (fs.existsSync(built) && fs.statSync(built).mtimeMs > fs.statSync(prebuilt).mtimeMs)) {
      const r = spawnSync(process.execPath, [path.join(repoRoot, 'scripts', 'prebuild.js'), '--from-build', '--no-test', '--quiet'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`prebuild --from-build failed:\n${r.stdout}\n${r.stderr}`);
    }
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: repoRoot, encoding: 'utf8' });
    if (pack.status !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`);
    tarball = path.join(tmp, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0].filename);
    app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'sdnode-install-test', version: '1.0.0', private: true }));
    env = { ...process.env, PATH: pathWithoutToolchain(), npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
    delete env.SDNODE_BINARY;
    delete env.SDNODE_FORCE_BUILD;
    for (const k of Object.keys(env)) if (k.startsWith('npm_') && !k.startsWith('npm_config_')) delete env[k]; // jest run via npm test
  });

  test('the tarball holds the prebuilt binaries, the shipped merges and the addon sources, not tests or benchmarks', () => {
    const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
    expect(list).toContain(`package/prebuilds/${process.platform}-${process.arch}/sdnode.napi.glibc.node`);
    expect(list).toContain('package/data/clip-bpe-merges.txt.gz');
    expect(list).toContain('package/native/addon/addon.cpp');
    expect(list.some((f) => f.startsWith('package/native/tests/') || f.startsWith('package/native/tools/'))).toBe(false);
    expect(list.some((f) => f.startsWith('package/build/'))).toBe(false);
  });

  test('PATH really has no cmake, compiler or make', () => {
    for (const tool of ['cmake', 'g++', 'gcc', 'cc', 'c++', 'make']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' }).stdout.trim()).toBe('');
    }
    expect(spawnSync('sh', ['-c', 'command -v node'], { env, encoding: 'utf8' }).stdout.trim()).not.toBe('');
  });

  test('npm install of the tarball succeeds and builds nothing', () => {
    const t0 = Date.now();
    // --prefer-offline: the dependencies (sharp, node-gyp-build, ...) come from npm's cache when it has them
    const r = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], app, env);
    // eslint-disable-next-line no-console
    console.log(`npm install of the packed tarball: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (r.status !== 0) throw new Error(`npm install failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    const pkg = path.join(app, 'node_modules', 'sdnode');
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false); // nothing compiled
  });

  test('npx sdnode generate runs end to end on a tiny model', () => {
    const out = path.join(app, 'fox.png');
    const r = run('npx', ['--no-install', 'sdnode', 'generate', '-m', tinyModel().gguf, '-p', 'a red fox', '-o', out, '-W', '64', '-H', '64', '--steps', '2', '-s', '7'], app, env);
    if (r.status !== 0) throw new Error(`sdnode generate failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    expect(r.stdout).toMatch(/saved .*fox\.png \(64x64, seed 7\)/);
    expect(fs.readFileSync(out).subarray(1, 4).toString('latin1')).toBe('PNG');
    const sys = run('npx', ['--no-install', 'sdnode', 'system', '--json'], app, env);
    expect(sys.status).toBe(0);
    const j = JSON.parse(sys.stdout) as { binary: string };
    expect(j.binary).toContain(path.join('prebuilds', `${process.platform}-${process.arch}`));
  });

  test('the public API loads the prebuilt addon and generates', () => {
    const script = `
      const sdnode = require('sdnode');
      (async () => {
        const info = sdnode.getSystemInfo();
        const model = await sdnode.loadModel(${JSON.stringify(tinyModel().gguf)});
        const r = await model.generate({ prompt: 'a red fox', width: 64, height: 64, steps: 1, seed: 1 });
        await model.dispose();
        console.log(JSON.stringify({ backends: info.backends, binary: info.binary, width: r.images[0].width }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = run(process.execPath, ['-e', script], app, env);
    if (r.status !== 0) throw new Error(`API run failed:\n${r.stdout}\n${r.stderr}`);
    const j = JSON.parse(r.stdout) as { backends: string[]; binary: string; width: number };
    expect(j.backends).toContain('cpu');
    expect(j.width).toBe(64);
    expect(j.binary).toContain('prebuilds');
  });

  test('building from source without a compiler says what to install', () => {
    const r = run('npm', ['rebuild', 'sdnode', '--foreground-scripts'], app, { ...env, SDNODE_FORCE_BUILD: '1' });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/building from source needs cmake \(>= 3\.16\) and a C\+\+17 compiler/);
    expect(`${r.stdout}${r.stderr}`).toMatch(/apt-get install -y cmake g\+\+/);
  });
});
