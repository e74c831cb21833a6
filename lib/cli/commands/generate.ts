/**
 * `sdnode generate`: text to image.
 * @internal
 * @packageDocumentation
 */
import * as path from 'path';
import { loadModel, type GenerationResult, type Model } from '../../model';
import { checkOutputPath, type GeneratedImage } from '../../image';
import { inspect } from '../../convert';
import { bindingLoadMs } from '../../binding';
import { SAMPLERS, SCHEDULERS, RNGS, WEIGHT_TYPES, PREVIEW_METHODS, copyDefined, type GenerateOptions, type LoadOptions, type ModelParts, type PreviewMethod } from '../../options';
import { UsageError } from '../args';
import type { OptionSpec } from '../args';
import type { Command } from '../command';
import { formatDuration, ProgressBar } from '../progress';

/** API option name -> CLI flag, to phrase validation errors in the user's terms. */
export const FLAG_OF: Record<string, string> = {
  prompt: '--prompt',
  negativePrompt: '--negative-prompt',
  width: '--width',
  height: '--height',
  steps: '--steps',
  cfgScale: '--cfg',
  sampler: '--sampler',
  scheduler: '--scheduler',
  seed: '--seed',
  rng: '--rng',
  clipSkip: '--clip-skip',
  batchCount: '--batch',
  threads: '--threads',
  device: '--device',
  vramBudget: '--vram-budget',
  weightType: '--weight-type',
  tokenizerPath: '--tokenizer',
  previewEvery: '--preview-every',
  previewMethod: '--preview-method',
  pathOrParts: '--model',
  path: '--output',
  initImage: '--init-img',
  mask: '--mask',
  maskBlur: '--mask-blur',
  strength: '--strength',
  taesdPath: '--taesd',
  decoder: '--taesd',
  loraDir: '--lora-model-dir',
  embeddingDir: '--embd-dir',
  'controlNet.model': '--control-net',
  'controlNet.image': '--control-image',
  'controlNet.strength': '--control-strength',
};

/** Output file of image i of n: `out.png`, or `out-0.png`, `out-1.png`, ... for a batch. */
export function outputPath(output: string, i: number, n: number): string {
  if (n === 1) return output;
  const ext = path.extname(output);
  return `${output.slice(0, output.length - ext.length)}-${i}${ext}`;
}

async function openModel(file: string | ModelParts, options: LoadOptions): Promise<Model> {
  // Internal test hook: SDNODE_TEST_FAKE_MODEL='{"stepMs":5}' swaps in the addon's fake engine (no weights), so the
  // CLI's own behaviour (arguments, progress, Ctrl-C, --json) can be tested without a model.
  const fake = process.env.SDNODE_TEST_FAKE_MODEL;
  if (fake) {
    const { loadFakeModel } = await import('../../testing');
    return loadFakeModel(JSON.parse(fake), { onProgress: options.onProgress, signal: options.signal });
  }
  return loadModel(file, options);
}

/** Where a model runs: the load options shared by `generate`, `serve` and `worker`. */
export const DEVICE_OPTIONS: OptionSpec[] = [
  { name: 'device', type: 'string', arg: 'DEV', description: "auto | cpu | vulkan | vulkan:N (see 'sdnode system')", default: 'auto' },
  { name: 'vram-budget', type: 'string', arg: 'SIZE', description: 'device memory for weights, e.g. 6GB: 3/4 resident, 1/4 a streaming area; weights that do not fit stay in host memory and are streamed to the device when used, with prefetch' },
  { name: 'vae-tiling', type: 'boolean', description: 'run the VAE (decode, and encode of --init-img) in overlapping tiles (less memory; default: on a GPU device when needed)' },
  { name: 'clip-on-cpu', type: 'boolean', description: 'run the text encoder on the CPU (GPU devices)' },
  { name: 'vae-on-cpu', type: 'boolean', description: 'run the VAE on the CPU (GPU devices)' },
];

/** Where and how a model runs, shared by `generate`, `serve` and `worker`: DEVICE_OPTIONS, --threads, --weight-type. */
export const ENGINE_OPTIONS: OptionSpec[] = [
  ...DEVICE_OPTIONS,
  { name: 'threads', short: 't', type: 'integer', arg: 'N', description: 'CPU threads (0: physical cores)', default: '0' },
  { name: 'weight-type', type: 'string', arg: 'TYPE', description: `quantize on load: ${WEIGHT_TYPES.join(' ')}` },
];

/** The load options given by DEVICE_OPTIONS (and --threads) on a command line. */
export function deviceLoadOptions(o: Record<string, unknown>): Pick<LoadOptions, 'threads' | 'device' | 'vramBudget' | 'vaeTiling' | 'textEncoderOnCpu' | 'vaeOnCpu'> {
  const out: ReturnType<typeof deviceLoadOptions> = {};
  if (o.threads !== undefined) out.threads = o.threads as number;
  if (o.device !== undefined) out.device = o.device as LoadOptions['device'];
  if (o['vram-budget'] !== undefined) out.vramBudget = o['vram-budget'] as string;
  if (o['vae-tiling'] === true) out.vaeTiling = true;
  if (o['clip-on-cpu'] === true) out.textEncoderOnCpu = true;
  if (o['vae-on-cpu'] === true) out.vaeOnCpu = true;
  return out;
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'generate images from a text prompt (and an init image / mask)',
  usage: 'sdnode generate --model FILE --prompt TEXT --output out.png [options]',
  description:
    'Generates one image (or --batch N) and writes it as PNG (with A1111 "parameters" metadata), JPEG or WebP,\n' +
    'chosen by the --output extension. A batch writes out-0.png, out-1.png, ... Progress goes to stderr;\n' +
    'Ctrl-C cancels cleanly (exit code 130). img2img: --init-img FILE [--strength X]; inpainting: add --mask FILE\n' +
    '(white = repaint). --taesd FILE decodes (and previews) with the tiny autoencoder instead of the VAE.',
  positionals: 0,
  options: [
    { name: 'model', short: 'm', type: 'string', arg: 'FILE', description: 'model file (.safetensors/.ckpt/.gguf) or diffusers folder', required: true },
    { name: 'vae', type: 'string', arg: 'FILE', description: 'a separate VAE replacing the model\'s (e.g. the SDXL fp16-fix VAE)' },
    { name: 'prompt', short: 'p', type: 'string', arg: 'TEXT', description: 'what to draw', required: true },
    { name: 'negative-prompt', short: 'n', type: 'string', arg: 'TEXT', description: 'what to avoid', default: '""' },
    { name: 'output', short: 'o', type: 'string', arg: 'FILE', description: 'output image (.png, .jpg, .jpeg, .webp)', required: true },
    {
      name: 'width',
      short: 'W',
      type: 'integer',
      arg: 'N',
      description: 'width, 64-2048: a multiple of 64 for SD 1.x/2.x, of 32 for SDXL (8 x the U-Net\'s 2^downsamples; sdnode info shows a model\'s rule)',
      default: 'the model\'s: 512, SD 2.x v 768, SDXL 1024',
    },
    { name: 'height', short: 'H', type: 'integer', arg: 'N', description: 'height: same rule as --width', default: 'as --width' },
    { name: 'steps', type: 'integer', arg: 'N', description: 'sampling steps', default: '20' },
    { name: 'cfg', type: 'number', arg: 'X', description: 'classifier-free guidance scale', default: '7' },
    { name: 'sampler', type: 'string', arg: 'NAME', description: SAMPLERS.join(' | '), default: 'euler_a' },
    { name: 'scheduler', type: 'string', arg: 'NAME', description: SCHEDULERS.join(' | '), default: 'discrete' },
    { name: 'seed', short: 's', type: 'integer', arg: 'N', description: 'seed, -1 for random', default: '-1' },
    { name: 'rng', type: 'string', arg: 'NAME', description: RNGS.join(' | '), default: 'cuda' },
    {
      name: 'clip-skip',
      type: 'integer',
      arg: 'N',
      description: 'CLIP layers to skip from the end (1 = last layer; 0 = the model\'s default: SD 2.x/SDXL 2)',
      default: '0',
    },
    { name: 'batch', short: 'b', type: 'integer', arg: 'N', description: 'number of images (seeds seed, seed+1, ...)', default: '1' },
    ...ENGINE_OPTIONS,
    { name: 'tokenizer', type: 'string', arg: 'FILE', description: 'CLIP merges file (merges.txt, uncompressed); default: the model\'s own, else the CLIP merges shipped with sdnode' },
    { name: 'prediction', type: 'string', arg: 'TYPE', description: 'force the prediction type: eps | v (default: from the file, SD 2.x probed)' },
    { name: 'lora-model-dir', type: 'string', arg: 'DIR', description: 'folder of the LoRAs named by <lora:NAME:WEIGHT> in the prompt' },
    { name: 'embd-dir', type: 'string', arg: 'DIR', description: 'folder of textual-inversion embeddings (used by name in prompts)' },
    { name: 'control-net', type: 'string', arg: 'FILE', description: 'ControlNet model file' },
    { name: 'control-image', type: 'string', arg: 'FILE', description: 'control image for the ControlNet (used as given: edge/depth/pose map)' },
    { name: 'control-strength', type: 'number', arg: 'X', description: 'ControlNet strength', default: '0.9' },
    { name: 'preview', type: 'string', arg: 'FILE', description: 'keep writing the latest preview to FILE while sampling' },
    { name: 'preview-every', type: 'integer', arg: 'N', description: 'preview every N steps', default: '1' },
    { name: 'preview-method', type: 'string', arg: 'NAME', description: 'latent | taesd (needs --taesd)', default: 'latent, taesd with --taesd' },
    { name: 'init-img', short: 'i', type: 'string', arg: 'FILE', description: 'img2img: start from this image (stretched to the size)' },
    { name: 'mask', type: 'string', arg: 'FILE', description: 'inpainting mask, white = repaint (needs --init-img)' },
    { name: 'mask-blur', type: 'number', arg: 'X', description: 'Gaussian blur of the mask (sigma, pixels)', default: '0' },
    { name: 'strength', type: 'number', arg: 'X', description: 'denoising strength with --init-img, 0 to 1', default: '0.75' },
    { name: 'taesd', type: 'string', arg: 'FILE', description: 'TAESD file: decode with it instead of the VAE' },
    { name: 'json', type: 'boolean', description: 'print a machine-readable result on stdout' },
    { name: 'quiet', short: 'q', type: 'boolean', description: 'no progress output' },
  ],

  async run(args, ctx) {
    // Phase marks for --json "timings" (ms on the process clock: 0 = process start, performance.timeOrigin)
    const startMs = performance.now();
    const marks: { encode: number[]; steps: number[]; decode: number[] } = { encode: [], steps: [], decode: [] };
    const o = args.options;
    const output = o.output as string;
    // The output must be writable before minutes of work start: extension, folder, permissions (exit code 2).
    await checkOutputPath(output, '--output');
    const preview = o.preview as string | undefined;
    if (preview !== undefined) await checkOutputPath(preview, '--preview');
    const previewMethod = (o['preview-method'] ?? (o.taesd !== undefined ? 'taesd' : undefined)) as PreviewMethod | undefined;
    if (previewMethod !== undefined && !PREVIEW_METHODS.includes(previewMethod)) {
      throw new UsageError(`generate: --preview-method must be one of ${PREVIEW_METHODS.join(', ')} (got "${previewMethod}")`);
    }
    const genOptions: GenerateOptions = { prompt: o.prompt as string };
    // the flags named in FLAG_OF (without the leading --), in this order; --taesd sets decoder "taesd" (not the path)
    const fromFlags = (keys: (keyof GenerateOptions & string)[]): Partial<Record<keyof GenerateOptions & string, string>> =>
      Object.fromEntries(keys.map((k) => [k, FLAG_OF[k].slice(2)]));
    copyDefined(genOptions, o, fromFlags(['negativePrompt', 'width', 'height', 'steps', 'cfgScale', 'sampler', 'scheduler', 'seed',
      'rng', 'clipSkip', 'batchCount', 'initImage', 'mask', 'maskBlur', 'strength']));
    if (o.taesd !== undefined) genOptions.decoder = 'taesd';
    copyDefined(genOptions, o, fromFlags(['loraDir', 'embeddingDir']));
    if (o['control-net'] !== undefined || o['control-image'] !== undefined) {
      if (o['control-net'] === undefined || o['control-image'] === undefined)
        throw new UsageError('generate: --control-net and --control-image go together');
      genOptions.controlNet = {
        model: o['control-net'] as string,
        image: o['control-image'] as string,
        strength: (o['control-strength'] as number | undefined) ?? 0.9,
      };
    }

    // Validate everything before the (slow) model load, the size rule too when the file's headers give it.
    const { resolveGenerateOptions, checkSizeForModel } = await import('../../options');
    const resolved = resolveGenerateOptions(genOptions);
    if (!process.env.SDNODE_TEST_FAKE_MODEL) {
      const info = await inspect(o.model as string).catch(() => undefined); // load reports unreadable files itself
      if (info) checkSizeForModel(resolved.width, resolved.height, info.sizeMultiple, info.family);
    }
    const inspectedMs = performance.now();

    const bar = new ProgressBar(ctx.stderr, o.quiet !== true);
    const t0 = performance.now();
    const loadOptions: LoadOptions = {
      signal: ctx.signal,
      onProgress: (e) => bar.fraction('load', e.progress),
      ...deviceLoadOptions(o),
    };
    if (o['weight-type'] !== undefined) loadOptions.weightType = o['weight-type'] as LoadOptions['weightType'];
    if (o.tokenizer !== undefined) loadOptions.tokenizerPath = o.tokenizer as string;
    if (o.prediction !== undefined) loadOptions.prediction = o.prediction as LoadOptions['prediction'];
    if (o.taesd !== undefined) loadOptions.taesdPath = o.taesd as string;
    const model = await openModel(o.vae === undefined ? (o.model as string) : { file: o.model as string, vae: o.vae as string }, loadOptions);
    bar.done();
    const loadMs = performance.now() - t0;
    // The first time a model file is used, the metadata's "Model hash" (SHA-256 of the whole file) is not in the
    // per-user cache: read the file for it now, alongside the generation, rather than after it (with a cold page
    // cache the engine then finds most pages already read).
    if (!process.env.SDNODE_TEST_FAKE_MODEL && model.knownHash === undefined) void model.hash().catch(() => undefined);
    let result: GenerationResult;
    let generatedMs = 0;
    try {
      let previewWrite: Promise<void> | undefined;
      result = await model.generate(genOptions, {
        signal: ctx.signal,
        onProgress: (e) => {
          const now = performance.now();
          if (e.phase === 'encode') marks.encode.push(now);
          else if (e.phase === 'sample' && e.step > 0) marks.steps.push(now);
          else if (e.phase === 'sample') marks.steps.push(-now); // an image's sampling starts (negative: a start mark)
          else if (e.phase === 'decode') marks.decode.push(now);
          // a batch shows which image: "sample 2/4 [#####...] 7/20  ETA 1m02s"
          const label = e.images > 1 && e.phase === 'sample' ? `${e.phase} ${e.image + 1}/${e.images}` : e.phase;
          bar.update(label, e.step, e.steps, e.etaMs === undefined ? '' : `ETA ${formatDuration(e.etaMs)}`);
        },
        onPreview: preview
          ? (e) => {
              if (previewWrite) return; // still writing the previous one: skip this preview
              previewWrite = e.image.save(preview).then(
                () => {
                  previewWrite = undefined;
                },
                () => {
                  previewWrite = undefined;
                },
              );
            }
          : undefined,
        previewEvery: o['preview-every'] as number | undefined,
        previewMethod: previewMethod,
      });
      await previewWrite;
    } finally {
      bar.done();
      generatedMs = performance.now();
      await model.dispose();
    }
    const disposedMs = performance.now();
    // the A1111 "Model hash" of the metadata: read from the per-user cache, or the whole file hashed (first run)
    if (result.images.length && result.images[0].parameters?.model?.hash) await result.images[0].parameters.model.hash().catch(() => undefined);
    const hashedMs = performance.now();
    for (const w of result.warnings) ctx.stderr.write(`warning: ${w}\n`);
    const files: Array<{ file: string; image: GeneratedImage }> = result.images.map((image, i) => ({ file: outputPath(output, i, result.images.length), image }));
    for (const f of files) await f.image.save(f.file);
    const totalMs = performance.now() - t0;
    const savedMs = performance.now();
    const r1 = (x: number): number => Math.round(x * 10) / 10;
    // Wall-clock phases of this run (ms), for `npm run bench:first`; each U-Net step's time is between its progress
    // events, so the first step includes faulting in the weights it touches.
    const timings = () => {
      const sampleStart = marks.steps.find((x) => x < 0);
      const stepEnds = marks.steps.filter((x) => x > 0);
      const stepMs = stepEnds.map((x, i) => r1(x - (i === 0 ? -(sampleStart ?? -x) : stepEnds[i - 1])));
      return {
        timeOrigin: performance.timeOrigin,
        startupMs: r1(startMs), // process start, Node bootstrap and module imports, up to this command's code
        addonLoadMs: r1(bindingLoadMs()),
        inspectMs: r1(inspectedMs - startMs), // argument checks + reading the file's headers for the size rule (incl. addon load)
        loadMs: r1(t0 + loadMs - inspectedMs), // loadModel: open, map, name mapping, detection, validation
        encodeMs: marks.encode.length >= 2 ? r1(marks.encode[marks.encode.length - 1] - marks.encode[0]) : undefined,
        stepMs,
        decodeMs: marks.decode.length >= 2 ? r1(marks.decode[marks.decode.length - 1] - marks.decode[0]) : undefined,
        generateMs: r1(generatedMs - (t0 + loadMs)), // the whole generate() call, phases above included
        disposeMs: r1(disposedMs - generatedMs),
        hashMs: r1(hashedMs - disposedMs),
        saveMs: r1(savedMs - hashedMs), // image encoding (PNG/JPEG/WebP) and writing
        endMs: r1(savedMs),
      };
    };
    if (o.json) {
      const json = {
        model: o.model,
        images: files.map((f) => ({ file: path.resolve(f.file), width: f.image.width, height: f.image.height, seed: f.image.seed })),
        parameters: result.parameters,
        warnings: result.warnings,
        adapterBytes: result.adapterBytes,
        loadMs: Math.round(loadMs),
        generateMs: Math.round(result.elapsedMs),
        totalMs: Math.round(totalMs),
        timings: timings(),
      };
      ctx.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
    } else {
      for (const f of files) ctx.stdout.write(`saved ${f.file} (${f.image.width}x${f.image.height}, seed ${f.image.seed})\n`);
      ctx.stdout.write(`done in ${formatDuration(totalMs)} (load ${formatDuration(loadMs)}, generate ${formatDuration(result.elapsedMs)})\n`);
    }
    return 0;
  },
};
