// The Electron recipe's parts that plain Node can run (Electron's own binary cannot be downloaded here):
// examples/electron/sd-worker.js driven as a child process exactly as utilityProcess drives it (messages in,
// progress/done/error out, cancel, quit), the app.asar -> app.asar.unpacked mapping of the native binary, and the
// device probe's child started the way Electron needs (ELECTRON_RUN_AS_NODE).
import { fork, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nativeRoot } from '../lib/binding';
import { describeTiny, repoRoot, tinyModel } from './helpers/tiny';

jest.setTimeout(5 * 60 * 1000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-electron-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const workerJs = path.join(repoRoot, 'examples', 'electron', 'sd-worker.js');

interface Msg {
  id?: number;
  type: string;
  [k: string]: unknown;
}

function startWorker(): { child: ChildProcess; messages: Msg[]; next: (pred: (m: Msg) => boolean) => Promise<Msg> } {
  // SDNODE_MODULE: the worker requires this checkout's compiled package instead of node_modules/sdnode
  const child = fork(workerJs, [], { env: { ...process.env, SDNODE_MODULE: path.join(repoRoot, 'dist', 'index.js') }, stdio: 'pipe' });
  const messages: Msg[] = [];
  const waiters: Array<[(m: Msg) => boolean, (m: Msg) => void]> = [];
  child.on('message', (m: Msg) => {
    messages.push(m);
    for (const w of waiters.splice(0)) {
      if (w[0](m)) w[1](m);
      else waiters.push(w);
    }
  });
  const next = (pred: (m: Msg) => boolean): Promise<Msg> =>
    new Promise((resolve) => {
      const seen = messages.find(pred);
      if (seen) resolve(seen);
      else waiters.push([pred, resolve]);
    });
  return { child, messages, next };
}

const haveDist = fs.existsSync(path.join(repoRoot, 'dist', 'index.js'));
if (!haveDist) console.warn('electron recipe tests: SKIPPED: dist/ is not built (npm run build)');

(haveDist ? describeTiny : describe.skip)('examples/electron/sd-worker.js as a utility process', () => {
  test('generates with progress, reports typed errors, cancels, and quits cleanly', async () => {
    const { child, messages, next } = startWorker();
    try {
      await next((m) => m.type === 'ready');
      const out = path.join(tmp, 'fox.png');
      child.send({ id: 1, type: 'generate', model: tinyModel().gguf, options: { prompt: 'a red fox', width: 64, height: 64, steps: 2, seed: 5 }, output: out });
      const done = await next((m) => m.id === 1 && m.type !== 'progress');
      expect(done).toMatchObject({ type: 'done', files: [{ file: out, seed: 5 }] });
      expect(fs.existsSync(out)).toBe(true);
      expect(messages.some((m) => m.id === 1 && m.type === 'progress' && m.phase === 'sample')).toBe(true);

      // an error crosses the process boundary with its class name and stable code
      child.send({ id: 2, type: 'generate', model: tinyModel().gguf, options: { prompt: 'x', width: 72 }, output: path.join(tmp, 'bad.png') });
      expect(await next((m) => m.id === 2 && m.type !== 'progress')).toMatchObject({ type: 'error', name: 'InvalidOptionError', code: 'InvalidArgument' });

      // cancel a long one after its first sampling step
      child.send({ id: 3, type: 'generate', model: tinyModel().gguf, options: { prompt: 'x', width: 64, height: 64, steps: 200 }, output: path.join(tmp, 'c.png') });
      await next((m) => m.id === 3 && m.type === 'progress' && m.phase === 'sample' && (m.step as number) >= 1);
      child.send({ id: 3, type: 'cancel' });
      expect(await next((m) => m.id === 3 && m.type !== 'progress')).toMatchObject({ type: 'error', name: 'AbortError', code: 'Aborted' });

      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      child.send({ type: 'quit' });
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill();
    }
  });
});

describe('app.asar packaging', () => {
  test('the native binary is looked for in app.asar.unpacked when the package sits in app.asar', () => {
    const packed = path.join(tmp, 'resources', 'app.asar', 'node_modules', 'sdnode');
    const unpacked = path.join(tmp, 'resources', 'app.asar.unpacked', 'node_modules', 'sdnode');
    expect(nativeRoot(packed)).toBe(packed); // nothing unpacked: unchanged (the loader then lists what it tried)
    fs.mkdirSync(path.join(unpacked, 'prebuilds'), { recursive: true });
    expect(nativeRoot(packed)).toBe(unpacked);
    expect(nativeRoot(repoRoot)).toBe(repoRoot);
  });

  test('the device probe starts its child as plain Node under Electron (ELECTRON_RUN_AS_NODE)', () => {
    const src = fs.readFileSync(path.join(repoRoot, 'lib', 'device.ts'), 'utf8');
    expect(src).toMatch(/spawn\(process\.execPath,[^;]*ELECTRON_RUN_AS_NODE: '1'/s);
  });
});
