#!/usr/bin/env node
/**
 * The `sdnode` command line: `sdnode <generate|convert|info|system> [options]`.
 * Exit codes: 0 success, 1 failure, 2 bad arguments, 130 cancelled (Ctrl-C).
 * @packageDocumentation
 */
import { printable, terminalJson } from './printable';
import { AbortError, InvalidOptionError, SdnodeError } from '../errors';
import { formatHelp, parseArgs, UsageError } from './args';
import type { Command, CommandContext } from './command';
import { convertCommand } from './commands/convert';
import { FLAG_OF, generateCommand } from './commands/generate';
import { serveCommand } from './commands/serve';
import { workerCommand } from './commands/worker';
import { infoCommand, systemCommand } from './commands/info';
import { tokenizerCommand } from './commands/tokenizer';

const COMMANDS: readonly Command[] = [generateCommand, convertCommand, infoCommand, systemCommand, tokenizerCommand, serveCommand, workerCommand];

function version(): string {
  try {
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function mainHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return (
    'Usage: sdnode <command> [options]\n\nLocal Stable Diffusion on the CPU.\n\nCommands:\n' +
    COMMANDS.map((c) => `  ${c.name.padEnd(w)}${c.summary}`).join('\n') +
    '\n\nRun "sdnode <command> --help" for the options of a command.\n'
  );
}

/** Rephrases an option error in the CLI's flag names. */
function cliMessage(err: InvalidOptionError): string {
  let m = err.message;
  for (const [opt, flag] of Object.entries(FLAG_OF)) {
    m = m.replace(new RegExp(`\\bfor ${opt}\\b`), `for ${flag}`).replace(new RegExp(`^${opt}:`), `${flag}:`);
  }
  // an engine message names the option first ("clipSkip must be at most 2"): use the flag there too
  const flag = FLAG_OF[err.option];
  if (flag && !m.includes(flag)) m = m.replace(new RegExp(`^${err.option}\\b`), flag);
  return m;
}

/** Runs the CLI with argv (without node and script); resolves to the exit code. */
export async function main(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    ctx.stdout.write(mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '-v' || name === '--version') {
    ctx.stdout.write(`${version()}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  try {
    if (!cmd) throw new UsageError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(', ')}; see sdnode --help)`);
    const args = parseArgs(rest, cmd.options, cmd.name);
    if (args.help) {
      ctx.stdout.write(formatHelp(cmd.usage, cmd.description, cmd.options));
      return 0;
    }
    if (args.positionals.length !== cmd.positionals) {
      throw new UsageError(
        `${cmd.name}: expected ${cmd.positionals} argument${cmd.positionals === 1 ? '' : 's'} but got ${args.positionals.length}` +
          (args.positionals.length ? ` (${args.positionals.map((p) => JSON.stringify(p)).join(' ')})` : '') +
          `; usage: ${cmd.usage}`,
      );
    }
    return await cmd.run(args, ctx);
  } catch (err) {
    const prefix = `sdnode${cmd ? ` ${cmd.name}` : ''}`;
    let code: number;
    let text: string;
    if (err instanceof UsageError) {
      code = 2;
      text = `sdnode ${err.message}`;
    } else if (err instanceof InvalidOptionError) {
      code = 2;
      text = `${prefix}: invalid option: ${cliMessage(err)}`;
    } else if (err instanceof AbortError || ctx.signal.aborted) {
      code = 130;
      text = `${prefix}: cancelled`;
    } else if (err instanceof SdnodeError) {
      code = 1;
      text = `${prefix}: ${err.name}: ${err.message}`;
    } else {
      code = 1;
      text = `${prefix}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    }
    // messages can carry a file's strings (names, metadata) or an argument's bytes: escaped for the terminal
    ctx.stderr.write(`${printable(text, 8192, true)}\n`);
    // --json: the error as JSON on stdout too, so scripts parse one stream whatever happens
    if (rest.includes('--json')) {
      const e = err as Partial<SdnodeError> & { option?: string };
      const json: Record<string, unknown> = {
        error: {
          name: err instanceof UsageError ? 'UsageError' : err instanceof Error ? err.name : 'Error',
          code: err instanceof UsageError ? 'Usage' : ctx.signal.aborted && !(err instanceof SdnodeError) ? 'Aborted' : (e.code ?? 'Internal'),
          message: text.replace(/^sdnode( [a-z-]+)?:? /, ''),
          ...(err instanceof InvalidOptionError && err.option ? { option: FLAG_OF[err.option] ?? err.option } : {}),
        },
        exitCode: code,
      };
      ctx.stdout.write(`${terminalJson(json)}\n`);
    }
    return code;
  }
}

if (require.main === module) {
  const controller = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\ncancelling (press Ctrl-C again to quit at once)...\n');
    controller.abort(new Error('interrupted (SIGINT)'));
  });
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: controller.signal }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sdnode: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
