// Golden-image tests for the adapters: w3-lora (kohya LoRA at 0.8 through the prompt's <lora:NAME:W> tag) and
// w6-controlnet (SD 1.5 ControlNet, control_model.* layout, strength 0.9) against the reference engine's images
// (../shared/golden, README "Wave-2"; pass: PSNR >= 40 dB), through the native CLI and through the JS API. Then bad
// input on the same loaded model: an SDXL LoRA, a ControlNet for another family and a missing embedding name each
// give a typed error naming the file and what to do, and the model keeps working.
//
// The random-weight files (SD 1.5 checkpoint, LoRA, ControlNet) are generated once by test/helpers/golden.ts
// (make_random_sd*.py) into the golden cache; without ../shared or python3 + numpy the tests are skipped with a
// visible message.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidOptionError, loadModel, SdnodeError, type Model } from '../lib/index';
import { writeTinyControlNet } from './helpers/controlnet';
import { readText } from './helpers/png';
import { comparePng, ensureArch, ensureMerges, goldenDir, goldenSkipReason, goldenTargets, onDevice, outDir, runNativeCli, type Wave2Case as GoldenWave2Case } from './helpers/golden';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const tiny = require('../scripts/make-tiny-model.js') as {
  listTensors: (o: Record<string, unknown>) => Array<{ name: string; shape: number[] }>;
  writeSafetensors: (file: string, tensors: Array<{ name: string; dtype: string; shape: number[]; data: Buffer }>) => void;
};

type WaveCase = GoldenWave2Case;

const LONG = 20 * 60 * 1000;

function f32(name: string, shape: number[]): { name: string; dtype: string; shape: number[]; data: Buffer } {
  return { name, dtype: 'f32', shape, data: Buffer.alloc(4 * shape.reduce((a, b) => a * b, 1)) };
}

/** A small SDXL-style kohya LoRA (te1/te2 names, 2048-wide cross-attention). */
function writeSdxlLora(file: string): void {
  tiny.writeSafetensors(file, [
    f32('lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', [4, 768]),
    f32('lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight', [768, 4]),
    f32('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight', [4, 2048]),
    f32('lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight', [640, 4]),
  ]);
}

/** A small ControlNet (control_model.* layout) whose cross-attention is 2048 wide (SDXL's). */
function writeForeignControlNet(file: string): void {
  writeTinyControlNet(file, { unetCh: 32, clipHidden: 2048 }, 'zero');
}

const reason = goldenSkipReason('cases-wave2.json');
if (reason) {
  // eslint-disable-next-line no-console
  console.warn(reason);
  test.skip(reason, () => undefined);
} else {
  const cases: WaveCase[] = JSON.parse(fs.readFileSync(path.join(goldenDir, 'cases-wave2.json'), 'utf8'));
  const byId = (id: string): WaveCase => cases.find((c) => c.id === id)!;

  const targets = goldenTargets('golden adapters');
  describe('golden adapters (PSNR >= 40 dB vs the reference engine)', () => {
    let model = '';
    let merges = '';
    let loraDir = '';
    let controlNet = '';
    beforeAll(() => {
      model = ensureArch('sd15');
      loraDir = path.dirname(ensureArch('lora-sd15')); // the case's <lora:lora-sd15-random:0.8> names this file
      controlNet = ensureArch('controlnet-sd15');
      merges = ensureMerges();
      fs.mkdirSync(outDir, { recursive: true });
    }, LONG);

    const cliArgs = (c: WaveCase, out: string, device: string): string[] => [
      'generate', '--model', model, '--tokenizer', merges, '--prompt', c.prompt, '--negative', c.negative,
      '--width', String(c.width), '--height', String(c.height), '--steps', String(c.steps), '--cfg', String(c.cfg),
      '--sampler', c.sampler, '--scheduler', c.scheduler, '--seed', String(c.seed), '--rng', 'cuda', '--threads', '2',
      '--device', device, '--output', out,
    ];

    for (const device of targets) {
      const { label, suffix } = onDevice(device);
      test(`w3-lora via sdn_cli (--lora-model-dir)${label}`, () => {
        const c = byId('w3-lora');
        const ours = path.join(outDir, `w3-lora${suffix}-cli.png`);
        const secs = runNativeCli([...cliArgs(c, ours, device), '--lora-model-dir', loraDir]);
        // eslint-disable-next-line no-console
        console.log(`w3-lora${label} (sdn_cli): ${comparePng(ours, c.id)} (${secs.toFixed(1)} s)`);
      }, LONG);

      test(`w6-controlnet via sdn_cli (--control-net, --control-image, --control-strength)${label}`, () => {
        const c = byId('w6-controlnet');
        const ours = path.join(outDir, `w6-controlnet${suffix}-cli.png`);
        const secs = runNativeCli([
          ...cliArgs(c, ours, device), '--control-net', controlNet, '--control-image', path.join(goldenDir, 'inputs', c.control_image!),
          '--control-strength', String(c.control_strength),
        ]);
        // eslint-disable-next-line no-console
        console.log(`w6-controlnet${label} (sdn_cli): ${comparePng(ours, c.id)} (${secs.toFixed(1)} s)`);
      }, LONG);
    }

    describe('JS API, one loaded model', () => {
      let m: Model;
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-adapters-'));
      beforeAll(async () => {
        m = await loadModel(model, { tokenizerPath: merges, threads: 2 });
      }, LONG);
      afterAll(async () => {
        await m?.dispose();
        fs.rmSync(tmp, { recursive: true, force: true });
      });
      const opts = (c: WaveCase): Record<string, unknown> => ({
        prompt: c.prompt, negativePrompt: c.negative, width: c.width, height: c.height, steps: c.steps, cfgScale: c.cfg,
        sampler: c.sampler, scheduler: c.scheduler, seed: c.seed, rng: 'cuda',
      });

      test('an SDXL LoRA on an SD 1.x model: InvalidOptionError naming the file and the family', async () => {
        const f = path.join(tmp, 'sdxl-lora.safetensors');
        writeSdxlLora(f);
        const p = m.generate({ prompt: 'x', width: 64, height: 64, steps: 1, loras: [{ path: f, weight: 1 }] });
        await expect(p).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(p).rejects.toThrow(/sdxl-lora\.safetensors.*SDXL.*use a LoRA made for SD 1\.x/);
      }, LONG);

      test('a ControlNet for another family: InvalidOptionError naming the file', async () => {
        const f = path.join(tmp, 'xl-controlnet.safetensors');
        writeForeignControlNet(f);
        const image = path.join(goldenDir, 'inputs', 'edges-256x256.png');
        const p = m.generate({ prompt: 'x', width: 64, height: 64, steps: 1, controlNet: { model: f, image } });
        await expect(p).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(p).rejects.toThrow(/xl-controlnet\.safetensors: this ControlNet is for SDXL .*use a ControlNet made for SD 1\.x/);
      }, LONG);

      test('a missing embedding name: NotFound naming it and the folder', async () => {
        fs.mkdirSync(path.join(tmp, 'emb'));
        const p = m.generate({ prompt: 'x', negativePrompt: 'embedding:nothere', width: 64, height: 64, steps: 1, embeddingDir: path.join(tmp, 'emb') });
        await expect(p).rejects.toBeInstanceOf(SdnodeError);
        await expect(p).rejects.toMatchObject({ code: 'NotFound', message: expect.stringMatching(/'nothere'.*emb.*embeddingDir/) });
      }, LONG);

      test('w3-lora through the API (prompt tag + loraDir), then PNG parameters record Lora hashes', async () => {
        const c = byId('w3-lora');
        const r = await m.generate({ ...opts(c), loraDir } as never);
        expect(r.adapterBytes).toBeGreaterThan(0);
        expect(r.warnings).toEqual([]);
        const ours = path.join(outDir, 'w3-lora-api.png');
        await r.images[0].save(ours);
        // eslint-disable-next-line no-console
        console.log(`w3-lora (API): ${comparePng(ours, c.id)}; LoRA merge added ${(r.adapterBytes / 1e6).toFixed(1)} MB, ${(r.elapsedMs / 1000).toFixed(1)} s`);
        const text = readText(fs.readFileSync(ours)).parameters;
        expect(text).toMatch(/Lora hashes: "lora-sd15-random: [0-9a-f]{12}"/);
      }, LONG);

      test('w6-controlnet through the API (same model: the LoRA is switched off without reloading)', async () => {
        const c = byId('w6-controlnet');
        const image = fs.readFileSync(path.join(goldenDir, 'inputs', c.control_image!)); // a Buffer works too
        const r = await m.generate({ ...opts(c), controlNet: { model: controlNet, image, strength: c.control_strength } } as never);
        expect(r.adapterBytes).toBe(0);
        const ours = path.join(outDir, 'w6-controlnet-api.png');
        await r.images[0].save(ours);
        // eslint-disable-next-line no-console
        console.log(`w6-controlnet (API): ${comparePng(ours, c.id)} (${(r.elapsedMs / 1000).toFixed(1)} s)`);
        const text = readText(fs.readFileSync(ours)).parameters;
        expect(text).toMatch(/ControlNet 0: "Module: none, Model: controlnet-sd15-random \[[0-9a-f]{8}\], Weight: 0\.9, Guidance Start: 0, Guidance End: 1"/);
      }, LONG);
    });
  });
}
