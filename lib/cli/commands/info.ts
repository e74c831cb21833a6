/**
 * `sdnode info`: what a model file holds (headers only), and `sdnode system`: engine information.
 * @internal
 * @packageDocumentation
 */
import { inspect } from '../../convert';
import { getSystemInfo } from '../../system';
import type { Command } from '../command';
import { printable, terminalJson } from '../printable';
import { formatBytes } from '../progress';

/** Metadata rows `sdnode info` prints (the JSON output has every key inspect() returns, itself bounded). */
const MAX_META_ROWS = 64;

/** 859520964 -> "859.5M". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export const infoCommand: Command = {
  name: 'info',
  summary: 'show what a model file holds (family, variant, tensors by type, parameters, size)',
  usage: 'sdnode info FILE [--json]',
  description: 'Reads the headers of a model file or diffusers folder (no weights are loaded).',
  positionals: 1,
  options: [{ name: 'json', type: 'boolean', description: 'print the information as JSON on stdout' }],

  async run(args, ctx) {
    const info = await inspect(args.positionals[0]);
    if (args.options.json) {
      ctx.stdout.write(`${terminalJson(info)}\n`);
      return 0;
    }
    const types = Object.entries(info.tensorsByType)
      .sort((a, b) => b[1] - a[1])
      .map(([t, n]) => `${t}: ${n}`)
      .join(', ');
    const rows: Array<[string, string]> = [
      ['file', printable(info.path)],
      ['format', info.format],
      ['family', `${info.family}${info.variant ? ` (${info.variant})` : ''}`],
      ['prediction', info.prediction || 'not declared'],
      ['runnable', info.runnable ? 'yes' : `no: ${printable(info.notRunnableReason)}`],
      ['tensors', `${info.tensorCount}${types ? ` (${types})` : ''}`],
      ['parameters', `${formatCount(info.parameterCount)} (${info.parameterCount})`],
      ['size', `${formatBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`],
      ['tokenizer', info.hasTokenizer ? 'yes (embedded or next to the model)' : 'no'],
    ];
    // bounded whatever the file holds: a few rows, keys and values cut, control characters escaped
    const meta = Object.entries(info.metadata);
    for (const [k, v] of meta.slice(0, MAX_META_ROWS)) rows.push([`meta ${printable(k, 60)}`, printable(v, 100)]);
    if (meta.length > MAX_META_ROWS) rows.push(['meta ...', `${meta.length - MAX_META_ROWS} more keys (sdnode info --json lists them)`]);
    let w = 0;
    for (const r of rows) w = Math.max(w, r[0].length);
    w += 2;
    ctx.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}${v}`).join('\n') + '\n');
    return 0;
  },
};

export const systemCommand: Command = {
  name: 'system',
  summary: 'show the engine version, SIMD level, threads, backends and devices',
  usage: 'sdnode system [--json]',
  description: 'Prints what the engine runs with on this machine.',
  positionals: 0,
  options: [{ name: 'json', type: 'boolean', description: 'print as JSON on stdout' }],

  async run(args, ctx) {
    const s = getSystemInfo();
    if (args.options.json) ctx.stdout.write(`${terminalJson(s)}\n`);
    else {
      ctx.stdout.write(
        `engine    ${s.version}\nsimd      ${s.simd}\nthreads   ${s.threads} (physical cores ${s.physicalCores})\nbackends  ${s.backends.join(', ')}\n`,
      );
      for (const n of s.backendNotes) ctx.stdout.write(`          ${n}\n`);
      ctx.stdout.write('devices\n');
      for (const d of s.devices) {
        const gib = (d.memoryBytes / 2 ** 30).toFixed(1);
        const feats = [d.fp16 ? 'fp16' : '', d.int8 ? 'int8' : '', d.cooperativeMatrix ? 'coopmat' : ''].filter(Boolean).join(' ');
        ctx.stdout.write(
          `  ${d.id.padEnd(10)} ${d.name} (${d.type}${d.vendor ? `, ${d.vendor}` : ''}${d.driver ? `, driver ${d.driver}` : ''}), ${gib} GiB` +
            `${feats ? `, ${feats}` : ''}${d.usable ? '' : ` — unusable: ${d.unusableReason ?? 'unknown reason'}`}\n`,
        );
      }
    }
    return 0;
  },
};
