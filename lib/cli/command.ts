/**
 * What every CLI command module exports.
 * @internal
 * @packageDocumentation
 */
import type { OptionSpec, ParsedArgs } from './args';

/** Streams and the cancellation signal a command runs with. */
export interface CommandContext {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** Aborted on Ctrl-C (SIGINT). */
  signal: AbortSignal;
}

/** One `sdnode <name>` command. */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage line (without "Usage: "). */
  usage: string;
  /** Longer help text. */
  description: string;
  options: readonly OptionSpec[];
  /** Number of positional arguments expected (exact). */
  positionals: number;
  /** Runs the command; resolves to the exit code. Throws UsageError / SdnodeError for cli.ts to report. */
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}
