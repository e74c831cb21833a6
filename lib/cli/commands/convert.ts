/**
 * `sdnode convert`: any supported model to GGUF, optionally quantized.
 * @internal
 * @packageDocumentation
 */
import { convert, type ConvertOptions } from '../../convert';
import { WEIGHT_TYPES } from '../../options';
import type { Command } from '../command';
import { formatBytes, formatDuration, ProgressBar } from '../progress';

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert a model to GGUF (optionally quantized)',
  usage: 'sdnode convert IN OUT.gguf [--type q8_0] [--vae-type f16] [--tokenizer FILE] [--force] [--json]',
  description:
    'Writes a GGUF file with stable-diffusion.cpp tensor names from a .safetensors/.ckpt file, a diffusers\n' +
    'folder or a GGUF file. Large weights get --type; VAE weights get --vae-type. Ctrl-C cancels and removes\n' +
    'the partial output (exit code 130).',
  positionals: 2,
  options: [
    { name: 'type', type: 'string', arg: 'TYPE', description: `weight type: ${WEIGHT_TYPES.join(' ')}`, default: 'f16' },
    { name: 'vae-type', type: 'string', arg: 'TYPE', description: 'VAE weight type', default: 'f16' },
    { name: 'tokenizer', type: 'string', arg: 'FILE', description: 'CLIP merges file to embed' },
    { name: 'force', type: 'boolean', description: 'write even if OUT does not end in .gguf' },
    { name: 'json', type: 'boolean', description: 'print a machine-readable summary on stdout' },
    { name: 'quiet', short: 'q', type: 'boolean', description: 'no progress output' },
  ],

  async run(args, ctx) {
    const [input, output] = args.positionals;
    const o = args.options;
    const bar = new ProgressBar(ctx.stderr, o.quiet !== true);
    const options: ConvertOptions = {
      signal: ctx.signal,
      onProgress: (e) => bar.update('convert', e.done, e.total, 'tensors'),
    };
    if (o.type !== undefined) options.type = o.type as ConvertOptions['type'];
    if (o['vae-type'] !== undefined) options.vaeType = o['vae-type'] as ConvertOptions['vaeType'];
    if (o.tokenizer !== undefined) options.tokenizerPath = o.tokenizer as string;
    if (o.force === true) options.force = true;
    let r;
    try {
      r = await convert(input, output, options);
    } finally {
      bar.done();
    }
    if (o.json) {
      ctx.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    } else {
      const types = Object.entries(r.tensorsByType)
        .map(([t, n]) => `${t}: ${n}`)
        .join(', ');
      ctx.stdout.write(
        `converted ${r.tensorCount} tensors in ${formatDuration(r.elapsedMs)}: ${formatBytes(r.bytesIn)} -> ${formatBytes(r.bytesOut)} (${types})\n` +
          `wrote ${output}\n`,
      );
    }
    return 0;
  },
};
