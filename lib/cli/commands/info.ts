/**
 * `sdnode info`: what a model file holds (headers only), and `sdnode system`: engine information.
 * @internal
 * @packageDocumentation
 */
import * as path from 'path';
import { inspect } from '../../convert';
import { chooseDevice, probeDevice, systemInfoIsolated } from '../../device';
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
      ['prediction', info.prediction ? `${info.prediction} (${info.predictionSource})` : 'not declared (probed when loaded)'],
      ['runnable', info.runnable ? 'yes' : `no: ${printable(info.notRunnableReason)}`],
      ['tensors', `${info.tensorCount}${types ? ` (${types})` : ''}`],
      ['parameters', `${formatCount(info.parameterCount)} (${info.parameterCount})`],
      ['size', `${formatBytes(info.sizeBytes)} (${info.sizeBytes} bytes)`],
      ['sizes', info.sizeMultiple > 0 ? `width and height: multiples of ${info.sizeMultiple}, 64 to 2048` : 'unknown (no U-Net)'],
      ['tokenizer', info.hasTokenizer ? 'yes (embedded or next to the model)' : 'not in the model: the CLIP merges shipped with sdnode are used'],
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
  summary: 'show the engine, the native binaries found, the backends and devices and which one "auto" picks',
  usage: 'sdnode system [--refresh] [--json]',
  description:
    'Prints what the engine runs with on this machine: the addon binary in use and the others found, the SIMD\n' +
    'level and threads, the compiled-in backends, each device with its verdict (GPU devices are test-loaded in\n' +
    'a child process once per driver; the verdict is remembered) and the device "auto" chooses, with reasons.',
  positionals: 0,
  options: [
    { name: 'refresh', type: 'boolean', description: 'test-load the GPU devices again instead of using remembered verdicts' },
    { name: 'json', type: 'boolean', description: 'print as JSON on stdout' },
  ],

  async run(args, ctx) {
    // GPU devices are enumerated in a child process: a driver that crashes there cannot take this command down
    const { info: s, error } = await systemInfoIsolated();
    const refresh = args.options.refresh === true;
    const probes = await Promise.all(s.devices.map((d) => probeDevice(d.id, { refresh })));
    const choice = await chooseDevice('auto', { refresh });
    if (args.options.json) {
      ctx.stdout.write(`${terminalJson({ ...s, probes, auto: choice, ...(error ? { error } : {}) })}\n`);
      return 0;
    }
    const here = `${process.platform}-${process.arch}`;
    const lines = [
      `engine    ${s.version}`,
      `binary    ${s.binary}`,
      ...s.binaries
        .filter((b) => b !== s.binary)
        .map((b) => `          also found: ${b}${b.includes(`${path.sep}prebuilds${path.sep}`) && !b.includes(`${path.sep}${here}${path.sep}`) ? ' (another platform)' : ''}`),
      `simd      ${s.simd}`,
      `threads   ${s.threads ? `${s.threads} (physical cores ${s.physicalCores})` : 'unknown'}`,
      `backends  ${s.backends.join(', ')}`,
      ...s.backendNotes.map((n) => `          ${n}`),
      'devices',
      ...s.devices.map((d, i) => {
        const p = probes[i];
        const gib = d.memoryBytes ? `, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB` : '';
        const feats = [d.fp16 ? 'fp16' : '', d.int8 ? 'int8' : '', d.cooperativeMatrix ? 'coopmat' : ''].filter(Boolean).join(' ');
        const verdict = !d.usable
          ? `unusable: ${d.unusableReason ?? 'unknown reason'}`
          : p.usable
            ? d.backend === 'cpu'
              ? 'usable'
              : `usable (test load passed${p.cached ? ', remembered' : ''})`
            : `unusable: ${p.reason ?? 'test load failed'}${p.cached ? ' (remembered)' : ''}`;
        return (
          `  ${d.id.padEnd(10)} ${d.name} (${d.type}${d.vendor ? `, ${d.vendor}` : ''}${d.driver ? `, driver ${d.driver}` : ''})${gib}` +
          `${feats ? `, ${feats}` : ''}; ${verdict}`
        );
      }),
      `auto      ${choice.device} (${choice.reason})`,
      ...choice.skipped.map((k) => `          passed over ${k.device}: ${k.reason}`),
    ];
    // device names, drivers and reasons come from drivers and child processes: escape control characters
    ctx.stdout.write(lines.map((l) => printable(l)).join('\n') + '\n');
    return 0;
  },
};
