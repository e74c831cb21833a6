// Model files: the tiny-model generator (scripts/make-tiny-model.js) and the native readers/converter through the
// build/bin/sdn_formats tool (inspect, convert, compare).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const tiny = require('../scripts/make-tiny-model.js');

const root = path.resolve(__dirname, '..');
const shared = process.env.SDNODE_SHARED_DIR || path.resolve(root, '..', 'shared');
const factsPath = path.join(shared, 'docs', 'ENGINE-FACTS.md');
const tool = path.join(root, 'build', 'bin', 'sdn_formats');

describe('make-tiny-model', () => {
  const haveFacts = fs.existsSync(factsPath);
  (haveFacts ? test : test.skip)('with SD1.5 dims, names and shapes equal ENGINE-FACTS Appendix A', () => {
    const facts = fs.readFileSync(factsPath, 'utf8');
    const start = facts.indexOf('## Appendix A');
    const block = facts.slice(start).split('```')[1];
    const want = block.split('\n').map((l) => l.trim()).filter(Boolean).sort();
    expect(want.length).toBe(1131);
    const got = tiny.listTensors({ sd15: true }).map((t: { name: string; shape: number[] }) => `${t.name} ${t.shape.join('x')}`).sort();
    expect(got).toEqual(want);
  });
  if (!haveFacts) {
    test('Appendix A comparison', () => {
      console.warn(`SKIP: ${factsPath} is absent; the Appendix A comparison did not run`);
    });
  }

  test('dry-run CLI lists the same tensors', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'scripts', 'make-tiny-model.js'), '--dry-run'], { encoding: 'utf8' });
    const lines = out.trim().split('\n');
    expect(lines.length).toBe(tiny.listTensors({}).length);
    expect(lines[0]).toBe('model.diffusion_model.time_embed.0.weight 128x32');
  });

  test('writes three forms deterministically, vocab matches merges', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-tiny-'));
    try {
      const a = tiny.makeTinyModel({ outDir: path.join(dir, 'a'), seed: 7, formats: ['safetensors', 'gguf', 'diffusers'] });
      const b = tiny.makeTinyModel({ outDir: path.join(dir, 'b'), seed: 7, formats: ['safetensors'] });
      expect(fs.readFileSync(a.safetensors).equals(fs.readFileSync(b.safetensors))).toBe(true);
      const merges = fs.readFileSync(a.merges, 'utf8').split('\n').filter(Boolean);
      expect(merges[0]).toBe('#version: 0.2');
      expect(a.vocabSize).toBe(256 + 256 + (merges.length - 1) + 2);
      const tok = a.tensors.find((t: { name: string }) => t.name.endsWith('token_embedding.weight'));
      expect(tok.shape[0]).toBe(a.vocabSize);
      const vocab = JSON.parse(fs.readFileSync(path.join(a.diffusers, 'tokenizer', 'vocab.json'), 'utf8'));
      expect(Object.keys(vocab).length).toBe(a.vocabSize);
      expect(vocab['!']).toBe(0);
      expect(vocab['a</w>']).toBe(320);
      expect(vocab['<|endoftext|>']).toBe(a.vocabSize - 1);
      for (const f of ['unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors',
        'text_encoder/model.safetensors', 'tokenizer/merges.txt', 'model_index.json'])
        expect(fs.existsSync(path.join(a.diffusers, f))).toBe(true);
      // every merge uses symbols that exist earlier in the vocabulary
      const have = new Set(Object.keys(vocab).slice(0, 512));
      for (const m of merges.slice(1)) {
        const [x, y] = m.split(' ');
        expect(have.has(x) && have.has(y)).toBe(true);
        have.add(x + y);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('weights are O(1)-scaled', () => {
    const v = tiny.tensorValues('model.diffusion_model.input_blocks.1.0.in_layers.2.weight', [32, 32, 3, 3], 1);
    let s = 0;
    for (const x of v) s += x * x;
    const std = Math.sqrt(s / v.length);
    expect(std).toBeGreaterThan(0.8 / Math.sqrt(288));
    expect(std).toBeLessThan(1.2 / Math.sqrt(288));
  });
});

const haveTool = fs.existsSync(tool);
(haveTool ? describe : describe.skip)('native model files (sdn_formats)', () => {
  let dir = '';
  let model: { safetensors: string; gguf: string; diffusers: string; ckpt: string; merges: string };
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdn-formats-'));
    model = tiny.makeTinyModel({ outDir: dir, dtype: 'f32', formats: ['safetensors', 'gguf', 'diffusers', 'ckpt'] });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const run = (...args: string[]) => spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 << 20 });

  test('inspect: safetensors, gguf, diffusers and ckpt forms', () => {
    for (const p of [model.safetensors, model.gguf, model.diffusers, model.ckpt]) {
      const r = run('inspect', p);
      expect(r.status).toBe(0);
      const info = JSON.parse(r.stdout);
      expect(info.family).toBe('sd1');
      expect(info.variant).toBe('base');
      expect(info.runnable).toBe(true);
      expect(info.tensor_count).toBe(970);
      expect(info.tensors_by_type).toEqual({ f32: 970 });
    }
    expect(JSON.parse(run('inspect', model.safetensors).stdout).format).toBe('safetensors');
    expect(JSON.parse(run('inspect', model.diffusers).stdout).has_tokenizer).toBe(true);
  });

  test('diffusers folder, .ckpt and single file hold the same tensors', () => {
    for (const other of [model.diffusers, model.ckpt]) {
      const r = run('compare', model.safetensors, other);
      expect(JSON.parse(r.stdout).problems).toEqual([]);
      expect(r.status).toBe(0);
    }
  });

  for (const type of ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_K', 'q6_K']) {
    test(`safetensors -> GGUF ${type} -> load equals the source within the type's error`, () => {
      const out = path.join(dir, `t-${type}.gguf`);
      const c = run('convert', model.safetensors, out, '--type', type, '--vae-type', type === 'f32' ? 'f32' : 'f16', '--tokenizer', model.merges);
      if (c.status !== 0 && /not available in this build/.test(c.stderr)) {
        console.warn(`SKIP: quantizing to ${type} is not available in this build yet`);
        return;
      }
      expect(c.stderr).toBe('');
      const summary = JSON.parse(c.stdout);
      expect(summary.tensor_count).toBe(970);
      expect(summary.bytes_out).toBe(fs.statSync(out).size);
      const cmp = run('compare', model.safetensors, out);
      expect(JSON.parse(cmp.stdout).problems).toEqual([]);
      expect(run('merges', out).stdout).toBe(fs.readFileSync(model.merges, 'utf8'));
    });
  }

  test('corrupt-file corpus: every file gives its typed error naming the file and the problem', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { makeCorruptCorpus } = require('../scripts/make-corrupt-corpus.js');
    const cdir = path.join(dir, 'corrupt');
    const manifest: { file: string; code: string; message: string }[] = makeCorruptCorpus(cdir);
    expect(manifest.length).toBeGreaterThan(20);
    for (const c of manifest) {
      const r = run('inspect', path.join(cdir, c.file));
      expect({ file: c.file, status: r.status }).toEqual({ file: c.file, status: 2 });
      expect(r.stderr).toContain(`ERROR ${c.code}:`);
      expect(r.stderr).toContain(c.file);
      expect(r.stderr).toContain(c.message);
    }
  });

  test('errors are typed and name the file', () => {
    const missing = run('inspect', path.join(dir, 'nope.safetensors'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/NotFound: .*nope\.safetensors/);
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x10]), Buffer.from('{}')]));
    const r = run('inspect', bad);
    expect(r.stderr).toMatch(/InvalidFile: .*bad\.safetensors: .*100 MB/);
  });
});
if (!haveTool) {
  test('native model-file checks', () => {
    console.warn(`SKIP: ${tool} is not built (npm run build:native); native model-file checks did not run`);
  });
}
