// The native addon loader: the real one loads; a folder without binaries gives a NativeBindingError that lists
// every attempt and says what to do.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NativeBindingError } from '../lib/index';
import { binding, loadBinding, packageRoot } from '../lib/binding';

test('the built addon loads and exposes the documented functions', () => {
  const b = binding();
  for (const f of ['getSystemInfo', 'inspect', 'convert', 'validateParams', 'AbortHandle', 'Model']) {
    expect(typeof (b as unknown as Record<string, unknown>)[f]).toBe('function');
  }
  const h = new b.AbortHandle();
  expect(h.aborted).toBe(false);
  h.abort();
  expect(h.aborted).toBe(true);
  expect(loadBinding(packageRoot)).toBe(b); // require() caches the same module
});

test('no binary: NativeBindingError lists every attempt and what to do', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-nobinary-'));
  try {
    let err: unknown;
    try {
      loadBinding(dir, path.join(dir, 'nope.node'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeBindingError);
    const e = err as NativeBindingError;
    expect(e.code).toBe('BindingLoad');
    expect(e.attempts).toHaveLength(4);
    expect(e.attempts[0]).toMatch(/^SDNODE_BINARY=.*nope\.node: /);
    expect(e.attempts[1]).toMatch(/^node-gyp-build\(/);
    expect(e.attempts[2]).toMatch(/build\/Release\/sdnode\.node: file does not exist$/);
    expect(e.message).toContain('npm rebuild sdnode');
    expect(e.message).toContain(`${process.platform}-${process.arch}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a module that is not the addon is reported as such', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-wrong-'));
  try {
    const fake = path.join(dir, 'other.js');
    fs.writeFileSync(fake, 'module.exports = { hello: 1 };');
    expect(() => loadBinding(dir, fake)).toThrow(/other\.js: loaded, but it is not the sdnode addon/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('engine-level validation is reachable without a model', () => {
  expect(() => binding().validateParams({ prompt: '', negativePrompt: '', width: 64, height: 64, steps: 0, cfgScale: 7, sampler: 'euler_a', scheduler: 'discrete', seed: 1, rng: 'cuda', clipSkip: 1, batchCount: 1, previewEvery: 0 })).toThrow(
    expect.objectContaining({ code: 'InvalidArgument' }),
  );
});
