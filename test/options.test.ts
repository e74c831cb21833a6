// Option validation: everything is checked in TypeScript before native work, with exact, actionable messages.
import {
  AbortError,
  DisposedError,
  GENERATE_DEFAULTS,
  InsufficientMemoryError,
  InvalidOptionError,
  ModelLoadError,
  NativeBindingError,
  SdnodeError,
  UnsupportedError,
  resolveGenerateOptions,
  SAMPLERS,
} from '../lib/index';
import { fromNative } from '../lib/errors';
import { defaultSizeFor, describeValue, maxThreads, resolveLoadOptions, resolveModelSource } from '../lib/options';

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return (err as Error).message;
  }
  throw new Error('did not throw');
}

describe('resolveGenerateOptions', () => {
  test('defaults: 512x512, 20 steps, cfg 7, euler_a, discrete, cuda, clip skip 0 (the model default), batch 1', () => {
    const r = resolveGenerateOptions({ prompt: 'a fox', seed: 42 });
    expect(r).toEqual({
      prompt: 'a fox',
      negativePrompt: '',
      width: 512,
      height: 512,
      steps: 20,
      cfgScale: 7,
      sampler: 'euler_a',
      scheduler: 'discrete',
      seed: 42,
      rng: 'cuda',
      clipSkip: 0,
      batchCount: 1,
      maskBlur: 0,
      decoder: 'vae',
      loras: [],
      loraDir: '',
      embeddingDir: '',
    });
    expect(GENERATE_DEFAULTS.width).toBe(512);
    // a model's native size replaces the default size (SDXL 1024, SD 2.x v 768), never an explicit one
    expect(resolveGenerateOptions({ prompt: 'x' }, 1024).width).toBe(1024);
    expect(resolveGenerateOptions({ prompt: 'x', height: 768 }, 1024)).toMatchObject({ width: 1024, height: 768 });
    expect(defaultSizeFor('sdxl')).toBe(1024);
    expect(defaultSizeFor('sd2', 'v')).toBe(768);
    expect(defaultSizeFor('sd2', 'eps')).toBe(512);
    expect(defaultSizeFor('sd1', 'v')).toBe(512);
  });

  test('adapters: loras, loraDir, embeddingDir and controlNet are checked before any native work', () => {
    const r = resolveGenerateOptions({
      prompt: 'a', seed: 1, loras: [{ path: 'a.safetensors' }, { path: 'b.safetensors', weight: -0.5 }], loraDir: 'loras',
      controlNet: { model: 'cn.safetensors', image: 'edges.png', end: 0.5 },
    });
    expect(r.loras).toEqual([{ path: 'a.safetensors', weight: 1 }, { path: 'b.safetensors', weight: -0.5 }]);
    expect(r.loraDir).toBe('loras');
    expect(r.controlNet).toEqual({ model: 'cn.safetensors', image: 'edges.png', strength: 1, start: 0, end: 0.5 });
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ loras: 'a.safetensors' }, /for loras/],
      [{ loras: [{ path: '' }] }, /loras\[0\]\.path/],
      [{ loras: [{ path: 'a', weight: NaN }] }, /loras\[0\]\.weight/],
      [{ loras: [{ path: 'a', wieght: 1 }] }, /wieght/],
      [{ controlNet: { model: 'cn' } }, /controlNet\.image/],
      [{ controlNet: { model: 'cn', image: 'x.png', strength: -1 } }, /controlNet\.strength/],
      [{ controlNet: { model: 'cn', image: 'x.png', start: 0.8, end: 0.2 } }, /controlNet\.end/],
      [{ embeddingDir: 3 }, /embeddingDir/],
    ];
    for (const [o, re] of bad) expect(() => resolveGenerateOptions({ prompt: 'a', ...o })).toThrow(re);
  });

  test('a missing or -1 seed becomes a random integer in [0, 2^32)', () => {
    for (const seed of [undefined, -1]) {
      const r = resolveGenerateOptions({ prompt: '', seed });
      expect(Number.isInteger(r.seed)).toBe(true);
      expect(r.seed).toBeGreaterThanOrEqual(0);
      expect(r.seed).toBeLessThan(2 ** 32);
    }
  });

  test('exact messages', () => {
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', width: 500 }))).toBe(
      'expected an integer multiple of 8 from 64 to 2048 (SD 1.x models need multiples of 64; `sdnode info` and ModelInfo.sizeMultiple give a model\'s rule) for width but received 500 (number)',
    );
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', height: '512' }))).toBe(
      'expected an integer multiple of 8 from 64 to 2048 (SD 1.x models need multiples of 64; `sdnode info` and ModelInfo.sizeMultiple give a model\'s rule) for height but received "512" (string)',
    );
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', cfgScale: NaN }))).toBe(
      'expected a finite number from 0 to 100 for cfgScale but received NaN (number)',
    );
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', steps: 0 }))).toBe('expected an integer from 1 to 1000 for steps but received 0 (number)');
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', sampler: 'euler_ancestral' as never }))).toBe(
      `expected one of ${SAMPLERS.join(', ')} for sampler but received "euler_ancestral" (string)`,
    );
    expect(messageOf(() => resolveGenerateOptions({ prompt: 42 } as never))).toBe('expected a string for prompt but received 42 (number)');
    expect(messageOf(() => resolveGenerateOptions({} as never))).toBe('expected a string for prompt but received undefined (undefined)');
    expect(messageOf(() => resolveGenerateOptions(null))).toBe('expected an object for options but received null (null)');
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', seed: 1.5 }))).toMatch(/^expected an integer from -1 to \d+ for seed but received 1.5 \(number\)$/);
  });

  test('every option is checked', () => {
    const bad: Array<[string, unknown]> = [
      ['negativePrompt', 3],
      ['width', 4104],
      ['width', 56],
      ['width', 512.5],
      ['height', Infinity],
      ['steps', 1001],
      ['steps', 2.5],
      ['cfgScale', -1],
      ['cfgScale', '7'],
      ['sampler', 'Euler a'],
      ['scheduler', 'normal'],
      ['seed', -2],
      ['seed', 2 ** 60],
      ['seed', 10n],
      ['rng', 'gpu'],
      ['clipSkip', -1],
      ['clipSkip', 33],
      ['batchCount', 0],
      ['batchCount', 65],
    ];
    for (const [key, value] of bad) {
      let err: unknown;
      try {
        resolveGenerateOptions({ prompt: 'x', [key]: value });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as InvalidOptionError).option).toBe(key);
      expect((err as InvalidOptionError).code).toBe('InvalidArgument');
      expect((err as Error).message).toContain(` for ${key} but received `);
    }
  });

  test('unknown keys are rejected with a suggestion', () => {
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', cfg: 5 } as never))).toMatch(/received "cfg" \(string\) \(did you mean cfgScale\?\)$/);
    expect(messageOf(() => resolveGenerateOptions({ prompt: 'x', widht: 64 } as never))).toMatch(/did you mean width\?/);
  });

  test('describeValue', () => {
    expect(describeValue('a')).toBe('"a" (string)');
    expect(describeValue(undefined)).toBe('undefined (undefined)');
    expect(describeValue([1, 2])).toBe('[1,2] (array)');
    expect(describeValue({ a: 1 })).toBe('{"a":1} (object)');
    expect(describeValue(new Date(0))).toBe('[object Date] (object)');
    expect(describeValue(5n)).toBe('5n (bigint)');
    expect(describeValue('x'.repeat(100))).toMatch(/^"x{57}\.\.\." \(string\)$/);
  });
});

describe('load options and model source', () => {
  test('valid', () => {
    expect(resolveLoadOptions({ threads: 1, weightType: 'q8_0' })).toMatchObject({ threads: 1, weightType: 'q8_0', tokenizerPath: '' });
    expect(resolveModelSource('m.safetensors')).toBe('m.safetensors');
    expect(resolveModelSource({ unet: 'u', vae: 'v', textEncoder: 't' })).toEqual({ file: '', unet: 'u', vae: 'v', textEncoder: 't', tokenizer: '' });
    // a complete checkpoint with a replaced VAE (SDXL fp16-fix): the other parts are optional then
    expect(resolveModelSource({ file: 'xl.safetensors', vae: 'fix.safetensors' })).toEqual({
      file: 'xl.safetensors', unet: '', vae: 'fix.safetensors', textEncoder: '', tokenizer: '',
    });
    expect(messageOf(() => resolveModelSource({ vae: 'v' }))).toContain('for unet but received');
  });
  test('invalid', () => {
    expect(messageOf(() => resolveLoadOptions({ weightType: 'q3' }))).toBe(
      'expected one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K for weightType but received "q3" (string)',
    );
    expect(messageOf(() => resolveLoadOptions({ threads: -1 }))).toBe(`expected an integer from 0 to ${maxThreads()} for threads but received -1 (number)`);
    expect(messageOf(() => resolveLoadOptions({ signal: {} }))).toBe('expected an AbortSignal for signal but received {} (object)');
    expect(messageOf(() => resolveLoadOptions({ onProgress: 1 }))).toBe('expected a function for onProgress but received 1 (number)');
    expect(resolveLoadOptions({ prediction: 'v' }).prediction).toBe('v');
    expect(resolveLoadOptions({}).prediction).toBe('');
    expect(messageOf(() => resolveLoadOptions({ prediction: 'x0' }))).toContain('for prediction but received');
    expect(messageOf(() => resolveModelSource(''))).toBe('expected a non-empty string for pathOrParts but received "" (string)');
    expect(messageOf(() => resolveModelSource({ unet: 'u', vae: 'v' }))).toBe('expected a non-empty string for textEncoder but received undefined (undefined)');
    expect(messageOf(() => resolveModelSource(7))).toMatch(/for pathOrParts but received 7 \(number\)$/);
  });
});

describe('typed errors', () => {
  test('hierarchy, names and codes', () => {
    const cases: Array<[SdnodeError, string, string]> = [
      [new ModelLoadError('m', 'NotFound'), 'ModelLoadError', 'NotFound'],
      [new InvalidOptionError('m', 'width'), 'InvalidOptionError', 'InvalidArgument'],
      [new AbortError(), 'AbortError', 'Aborted'],
      [new DisposedError(), 'DisposedError', 'Disposed'],
      [new InsufficientMemoryError('m'), 'InsufficientMemoryError', 'OutOfMemory'],
      [new UnsupportedError('m'), 'UnsupportedError', 'Unsupported'],
      [new NativeBindingError('m', ['a: b']), 'NativeBindingError', 'BindingLoad'],
    ];
    for (const [err, name, code] of cases) {
      expect(err).toBeInstanceOf(SdnodeError);
      expect(err).toBeInstanceOf(Error);
      expect(err.name).toBe(name);
      expect(err.code).toBe(code);
    }
  });

  test('native error codes map to typed errors', () => {
    const native = (code: string, message = 'msg'): Error => Object.assign(new Error(message), { code });
    expect(fromNative(native('Aborted'), 'generate')).toBeInstanceOf(AbortError);
    expect(fromNative(native('Disposed'), 'generate')).toBeInstanceOf(DisposedError);
    expect(fromNative(native('OutOfMemory'), 'generate')).toBeInstanceOf(InsufficientMemoryError);
    expect(fromNative(native('Unsupported'), 'load')).toBeInstanceOf(UnsupportedError);
    expect(fromNative(native('InvalidArgument'), 'generate')).toBeInstanceOf(InvalidOptionError);
    expect((fromNative(native('InvalidArgument', 'cfg_scale must be finite'), 'generate') as InvalidOptionError).option).toBe('cfgScale');
    expect((fromNative(native('InvalidArgument', 'something else'), 'generate') as InvalidOptionError).option).toBe('');
    for (const code of ['NotFound', 'InvalidFile', 'Io']) {
      const e = fromNative(native(code), 'load') as SdnodeError;
      expect(e).toBeInstanceOf(ModelLoadError);
      expect(e.code).toBe(code);
      const e2 = fromNative(native(code), 'convert') as SdnodeError;
      expect(e2).not.toBeInstanceOf(ModelLoadError);
      expect(e2.code).toBe(code);
    }
    const internal = fromNative(native('Internal', 'bug'), 'generate') as SdnodeError;
    expect(internal.code).toBe('Internal');
    expect(internal.message).toBe('bug');
    const plain = new TypeError('x');
    expect(fromNative(plain, 'generate')).toBe(plain);
  });

  test('the stack of a mapped error points at the public call site', () => {
    function callSite(): Error {
      return new Error('site');
    }
    const e = fromNative(Object.assign(new Error('gone'), { code: 'NotFound' }), 'load', callSite());
    expect(e.stack).toMatch(/^ModelLoadError: gone\n\s+at callSite/);
  });
});
