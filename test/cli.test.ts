// The `sdnode` command line, run as a child process from dist/ (built here if missing or older than lib/).
// Generation uses the addon's fake engine (SDNODE_TEST_FAKE_MODEL) for argument/progress/Ctrl-C behaviour, and a
// tiny real model for the end-to-end runs.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { cliPath, ensureDist } from './helpers/dist';
import { readText } from './helpers/png';
import { describeTiny, repoRoot, tinyModel } from './helpers/tiny';

jest.setTimeout(5 * 60 * 1000);

const cli = cliPath;

beforeAll(() => ensureDist());

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sdnode(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 240000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const fake = { SDNODE_TEST_FAKE_MODEL: JSON.stringify({ stepMs: 5 }) };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('arguments', () => {
  test('the bin has a node shebang', () => {
    expect(fs.readFileSync(cli, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  test('--help for the CLI and every command', () => {
    const top = sdnode(['--help']);
    expect(top.status).toBe(0);
    for (const c of ['generate', 'convert', 'info', 'system']) expect(top.stdout).toContain(c);
    for (const c of ['generate', 'convert', 'info', 'system']) {
      const r = sdnode([c, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: sdnode ${c}`));
    }
    expect(sdnode(['generate', '--help']).stdout).toContain('--negative-prompt TEXT');
  });

  test('--version', () => {
    const r = sdnode(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
  });

  const bad: Array<[string[], RegExp]> = [
    [[], /^Usage: sdnode <command>/],
    [['paint'], /^sdnode unknown command "paint"/],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--width', 'abc'], /^sdnode generate: --width expects an integer, got "abc"$/],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--widht', '64'], /^sdnode generate: unknown option --widht \(did you mean --width\?\)$/],
    [['generate', '--model', 'm', '--output', 'o.png'], /^sdnode generate: missing required option --prompt TEXT$/],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.gif'], /^sdnode generate: invalid option: expected a path ending in \.png, \.jpg, \.jpeg or \.webp for --output/],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--steps'], /^sdnode generate: --steps needs a value/],
    [
      ['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--width', '500'],
      /^sdnode generate: invalid option: expected an integer multiple of 8 from 64 to 2048 \(SD 1\.x models need multiples of 64; .*\) for --width but received 500 \(number\)$/,
    ],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--sampler', 'magic'], /for --sampler but received "magic"/],
    [['generate', '--model', 'm', '--prompt', 'p', '--output', 'o.png', '--cfg', 'NaN'], /--cfg expects a number, got "NaN"/],
    [['convert', 'in.safetensors'], /^sdnode convert: expected 2 arguments but got 1/],
    [['convert', 'a', 'b', '--type', 'q3'], /^sdnode convert: invalid option: expected one of f32, .* for type but received "q3"/],
    [['info'], /^sdnode info: expected 1 argument but got 0/],
  ];
  test.each(bad)('bad arguments: %j -> one line on stderr, exit code 2', (args, message) => {
    const r = sdnode(args);
    expect(r.status).toBe(2);
    if (args.length === 0) {
      expect(r.stdout).toMatch(message);
    } else {
      expect(r.stderr.trimEnd()).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
  });

  test('a missing model file: one line, exit code 1', () => {
    const r = sdnode(['info', path.join(tmp, 'missing.safetensors')]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^sdnode info: /);
  });

  test('system --json', () => {
    const r = sdnode(['system', '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: expect.any(String), simd: expect.any(String), backends: expect.arrayContaining(['cpu']) });
  });
});

describe('generate (fake engine)', () => {
  test('--json result, files with parameters, progress on stderr', () => {
    const out = path.join(tmp, 'fake.png');
    const r = sdnode(['generate', '-m', 'fake', '-p', 'a cat', '-o', out, '-W', '64', '-H', '64', '--steps', '4', '--seed', '9', '--batch', '2', '--json'], fake);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.images.map((i: { file: string; seed: number }) => [path.basename(i.file), i.seed])).toEqual([
      ['fake-0.png', 9],
      ['fake-1.png', 10],
    ]);
    expect(j.parameters).toMatchObject({ prompt: 'a cat', width: 64, height: 64, steps: 4, seed: 9, batchCount: 2, sampler: 'euler_a' });
    expect(readText(fs.readFileSync(path.join(tmp, 'fake-1.png'))).parameters).toContain('Seed: 10, Size: 64x64');
    // phase timings (npm run bench:first): every step of both images, each phase a duration >= 0
    expect(j.timings.stepMs).toHaveLength(8);
    for (const k of ['startupMs', 'addonLoadMs', 'inspectMs', 'loadMs', 'encodeMs', 'decodeMs', 'generateMs', 'disposeMs', 'hashMs', 'saveMs', 'endMs']) {
      expect(j.timings[k]).toBeGreaterThanOrEqual(0);
    }
    expect(r.stderr).toMatch(/sample 1\/2 \[#+\] 4\/4/); // a batch names the image
    expect(r.stderr).toMatch(/sample 2\/2 \[#+\] 4\/4/);
  });

  test('--preview writes latent-sized previews; jpeg output', async () => {
    const out = path.join(tmp, 'fake.jpg');
    const preview = path.join(tmp, 'preview.png');
    const r = sdnode(['generate', '-m', 'fake', '-p', 'x', '-o', out, '-W', '128', '-H', '64', '--steps', '3', '--preview', preview, '-q'], fake);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^saved .*fake\.jpg \(128x64, seed \d+\)\n/);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'jpeg', width: 128, height: 64 });
    expect(await sharp(preview).metadata()).toMatchObject({ format: 'png', width: 16, height: 8 });
  });

  test('Ctrl-C cancels cleanly with exit code 130 and writes nothing', async () => {
    const out = path.join(tmp, 'cancelled.png');
    const child = spawn(process.execPath, [cli, 'generate', '-m', 'fake', '-p', 'x', '-o', out, '-W', '64', '-H', '64', '--steps', '1000'], {
      env: { ...process.env, SDNODE_TEST_FAKE_MODEL: JSON.stringify({ stepMs: 20 }) },
    });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && /sample/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/sdnode generate: cancelled\n$/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describeTiny('CLI on a tiny real model', () => {
  test('generate --json, info, convert', () => {
    const tiny = tinyModel();
    const out = path.join(tmp, 'tiny.png');
    const g = sdnode(['generate', '--model', tiny.gguf, '--prompt', 'a red fox', '-W', '64', '-H', '64', '--steps', '1', '--cfg', '1', '--seed', '3', '--output', out, '--json']);
    expect(g.stderr).not.toMatch(/Error/);
    expect(g.status).toBe(0);
    const j = JSON.parse(g.stdout);
    expect(j.images[0]).toMatchObject({ file: out, width: 64, height: 64, seed: 3 });
    expect(readText(fs.readFileSync(out)).parameters).toMatch(/^a red fox\nSteps: 1, Sampler: Euler a, CFG scale: 1, Seed: 3, Size: 64x64, Model hash: [0-9a-f]{10}, Model: tiny-sd1, Version: sdnode$/);

    const info = sdnode(['info', tiny.safetensors]);
    expect(info.status).toBe(0);
    expect(info.stdout).toMatch(/^file\s+.*tiny-sd1\.safetensors$/m);
    expect(info.stdout).toMatch(/^family\s+sd1 \(base\)$/m);
    expect(info.stdout).toMatch(/^tensors\s+\d+ \(f32: \d+\)$/m);
    expect(info.stdout).toMatch(/^parameters\s+13\.8M \(\d+\)$/m);
    const infoJson = JSON.parse(sdnode(['info', tiny.safetensors, '--json']).stdout);
    expect(infoJson).toMatchObject({ family: 'sd1', format: 'safetensors' });

    const gguf = path.join(tmp, 'tiny-q8.gguf');
    const c = sdnode(['convert', tiny.safetensors, gguf, '--type', 'q8_0', '--tokenizer', tiny.merges]);
    expect(c.status).toBe(0);
    expect(c.stdout).toMatch(/^converted \d+ tensors in .*q8_0: \d+/);
    expect(c.stderr).toMatch(/convert\s+\[#+\] (\d+)\/\1/);
    const cj = JSON.parse(sdnode(['info', gguf, '--json']).stdout);
    expect(cj).toMatchObject({ format: 'gguf', hasTokenizer: true });
    expect(cj.tensorsByType.q8_0).toBeGreaterThan(0);
  });
});
