/**
 * A small command-line parser: `--name value`, `--name=value`, boolean `--flag`, `-h`, positionals and `--`.
 * Unknown options and missing or malformed values are UsageErrors (one line, exit code 2).
 * @internal
 * @packageDocumentation
 */
import { closest } from '../options';

/** A bad command line: printed as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** One option of a command. */
export interface OptionSpec {
  /** Long name without dashes, e.g. `negative-prompt`. */
  name: string;
  /** `string`, `number` (finite), `integer`, or `boolean` (a flag without value). */
  type: 'string' | 'number' | 'integer' | 'boolean';
  /** Placeholder shown in help, e.g. `FILE`. */
  arg?: string;
  /** Help text. */
  description: string;
  /** Default shown in help (not applied by the parser). */
  default?: string;
  /** Must be given. */
  required?: boolean;
  /** One-letter alias, e.g. `o`. */
  short?: string;
  /** May be given more than once (string options only): the value is an array. */
  multiple?: boolean;
}

/** Parsed command line. */
export interface ParsedArgs {
  options: Record<string, string | number | boolean | string[] | undefined>;
  positionals: string[];
  help: boolean;
}

/** Parses argv (without node and script) against the specs. */
export function parseArgs(argv: readonly string[], specs: readonly OptionSpec[], command: string): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const options: ParsedArgs['options'] = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') {
      help = true;
      continue;
    }
    let spec: OptionSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      inline = eq >= 0 ? a.slice(eq + 1) : undefined;
      spec = byName.get(name);
      if (!spec) {
        const near = closest(name, specs.map((s) => s.name));
        throw new UsageError(`${command}: unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}`);
      }
    } else if (a.startsWith('-') && a.length === 2 && a !== '-') {
      spec = byShort.get(a[1]);
      if (!spec) throw new UsageError(`${command}: unknown option ${a}`);
    } else {
      positionals.push(a);
      continue;
    }
    if (spec.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') {
        throw new UsageError(`${command}: --${spec.name} is a flag and takes no value (got "${inline}")`);
      }
      options[spec.name] = inline !== 'false';
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${command}: --${spec.name} needs a value (${spec.arg ?? spec.type})`);
      value = argv[++i];
    }
    if (spec.type === 'string' && spec.multiple) {
      options[spec.name] = [...((options[spec.name] as string[] | undefined) ?? []), value];
    } else if (spec.type === 'string') {
      options[spec.name] = value;
    } else {
      const n = value.trim() === '' ? NaN : Number(value);
      if (!Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n))) {
        throw new UsageError(`${command}: --${spec.name} expects ${spec.type === 'integer' ? 'an integer' : 'a number'}, got "${value}"`);
      }
      options[spec.name] = n;
    }
  }
  if (!help) {
    for (const s of specs) {
      if (s.required && options[s.name] === undefined) throw new UsageError(`${command}: missing required option --${s.name} ${s.arg ?? ''}`.trimEnd());
    }
  }
  return { options, positionals, help };
}

/** Renders a help page. */
export function formatHelp(usage: string, description: string, specs: readonly OptionSpec[]): string {
  const rows = specs.map((s) => {
    const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.arg ? ` ${s.arg}` : ''}`;
    const extra = [s.required ? 'required' : '', s.multiple ? 'repeatable' : '', s.default !== undefined ? `default: ${s.default}` : ''].filter(Boolean).join('; ');
    return [left, `${s.description}${extra ? ` (${extra})` : ''}`];
  });
  rows.push(['-h, --help', 'show this help']);
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return `Usage: ${usage}\n\n${description}\n\nOptions:\n${rows.map(([l, r]) => `  ${l.padEnd(width)}${r}`).join('\n')}\n`;
}
