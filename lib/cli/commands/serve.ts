/**
 * `sdnode serve`: the HTTP service (lib/server/, loaded only when the command runs). The model options and
 * shutdown helpers are shared with `sdnode worker` (worker.ts).
 * @internal
 * @packageDocumentation
 */
import type { OptionSpec, ParsedArgs } from '../args';
import { ENGINE_OPTIONS, deviceLoadOptions } from './generate';
import { UsageError } from '../args';
import type { Command, CommandContext } from '../command';
import { resolveLoadOptions, type LoadOptions, type WeightType } from '../../options';
import type { AdapterDirs, PoolLoadOptions } from '../../server/models';
import { DEFAULT_LIMITS } from '../../server/limits';

export const MODEL_OPTIONS: OptionSpec[] = [
  { name: 'model', short: 'm', type: 'string', arg: 'FILE', multiple: true, description: 'model file (.safetensors/.ckpt/.gguf) or diffusers folder; clients pick it by file name without extension' },
  { name: 'model-dir', type: 'string', arg: 'DIR', multiple: true, description: 'serve every model file (and diffusers folder) in DIR' },
  { name: 'memory-budget', type: 'integer', arg: 'MB', description: 'memory for loaded models; least recently used ones are unloaded to stay under it', default: 'half the RAM' },
  ...ENGINE_OPTIONS,
  { name: 'tokenizer', type: 'string', arg: 'FILE', description: 'CLIP merges file for models that do not embed one' },
  { name: 'taesd', type: 'string', arg: 'FILE', description: 'TAESD file: lets jobs ask for decoder "taesd" (fast, approximate)' },
  { name: 'lora-model-dir', type: 'string', arg: 'DIR', description: 'folder of the LoRAs prompts may name with <lora:NAME:WEIGHT>' },
  { name: 'embd-dir', type: 'string', arg: 'DIR', description: 'folder of textual-inversion embeddings (used by name in prompts)' },
  { name: 'control-net-dir', type: 'string', arg: 'DIR', description: 'folder of ControlNets jobs may name (controlNet.model, A1111 alwayson_scripts.controlnet)' },
];

/** The LoRA, embedding and ControlNet folders given on the command line. */
export function adapterDirs(args: ParsedArgs): AdapterDirs {
  return {
    loraDir: args.options['lora-model-dir'] as string | undefined,
    embeddingDir: args.options['embd-dir'] as string | undefined,
    controlNetDir: args.options['control-net-dir'] as string | undefined,
  };
}

export const GRACE: OptionSpec = { name: 'shutdown-grace', type: 'integer', arg: 'S', description: 'on Ctrl-C/SIGTERM, seconds a running job may take to finish (then serve cancels it; worker hands it back to the queue)', default: '30' };

export function positive(args: ParsedArgs, name: string, min = 1): number | undefined {
  const v = args.options[name] as number | undefined;
  if (v !== undefined && v < min) throw new UsageError(`--${name} must be at least ${min} (got ${v})`);
  return v;
}

/** Load options for every model, validated now (a bad --device or --weight-type fails before anything starts). */
export function loadOptions(args: ParsedArgs): PoolLoadOptions {
  const o = args.options;
  const out: PoolLoadOptions = { ...deviceLoadOptions(o) };
  if (o['weight-type'] !== undefined) out.weightType = o['weight-type'] as WeightType;
  if (o.tokenizer !== undefined) out.tokenizerPath = o.tokenizer as string;
  if (o.taesd !== undefined) out.taesdPath = o.taesd as string;
  resolveLoadOptions(out); // throws InvalidOptionError naming the option
  return out;
}

/** Resolves when the command should stop: Ctrl-C (ctx.signal) or SIGTERM. */
export function stopSignal(ctx: CommandContext): Promise<string> {
  return new Promise((resolve) => {
    if (ctx.signal.aborted) return resolve('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    const done = (why: string): void => {
      process.off('SIGTERM', onTerm);
      resolve(why);
    };
    ctx.signal.addEventListener('abort', () => done('SIGINT'), { once: true });
    process.on('SIGTERM', onTerm);
  });
}

export function logger(ctx: CommandContext, quiet: boolean): (line: string) => void {
  return (line) => {
    if (!quiet) ctx.stderr.write(`${new Date().toISOString()} ${line}\n`);
  };
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'HTTP image service: A1111 and OpenAI APIs, a job API with live progress, a web page',
  usage: 'sdnode serve --model FILE [--host 127.0.0.1] [--port 7860] [options]',
  description:
    'Serves the models given with --model/--model-dir over HTTP: POST /v1/jobs + GET /v1/jobs/ID/events (SSE progress,\n' +
    'previews, result), A1111 /sdapi/v1/txt2img, OpenAI /v1/images/generations, and a web page at /. Models load on\n' +
    'first use. With --queue redis://HOST the server runs no models: jobs go to a Redis queue for `sdnode worker`\n' +
    'processes. Binding anything but localhost needs --api-key. Ctrl-C or SIGTERM shuts down gracefully.',
  positionals: 0,
  options: [
    ...MODEL_OPTIONS,
    { name: 'host', type: 'string', arg: 'ADDR', description: 'address to bind (anything but localhost needs --api-key)', default: '127.0.0.1' },
    { name: 'port', type: 'integer', arg: 'N', description: 'port (0: any free port)', default: '7860' },
    { name: 'api-key', type: 'string', arg: 'KEY', description: 'require "Authorization: Bearer KEY" (or env SDNODE_API_KEY)' },
    { name: 'queue', type: 'string', arg: 'URL', description: 'redis://HOST[:PORT][/DB]: put jobs on a Redis queue for `sdnode worker`' },
    { name: 'max-size', type: 'integer', arg: 'PX', description: 'largest width or height', default: String(DEFAULT_LIMITS.maxSize) },
    { name: 'max-steps', type: 'integer', arg: 'N', description: 'most sampling steps per job', default: String(DEFAULT_LIMITS.maxSteps) },
    { name: 'max-batch', type: 'integer', arg: 'N', description: 'most images per job', default: String(DEFAULT_LIMITS.maxBatch) },
    { name: 'max-queue', type: 'integer', arg: 'N', description: 'most jobs waiting; more get HTTP 429', default: String(DEFAULT_LIMITS.maxQueue) },
    { name: 'max-concurrent', type: 'integer', arg: 'N', description: 'jobs running at once in this process (jobs on one model always take turns)', default: String(DEFAULT_LIMITS.maxConcurrent) },
    { name: 'body-limit', type: 'integer', arg: 'BYTES', description: 'largest request body; larger gets HTTP 413', default: String(DEFAULT_LIMITS.bodyLimit) },
    { name: 'result-ttl', type: 'integer', arg: 'S', description: 'seconds finished jobs and their images stay retrievable', default: '600' },
    { name: 'attempts', type: 'integer', arg: 'N', description: 'queue mode: tries per job when a worker fails with a retryable error', default: '3' },
    GRACE,
    { name: 'quiet', short: 'q', type: 'boolean', description: 'no log lines on stderr' },
  ],

  async run(args, ctx) {
    const o = args.options;
    const apiKey = (o['api-key'] as string | undefined) ?? process.env.SDNODE_API_KEY;
    const limits: Record<string, number> = {};
    for (const [flag, key] of [['max-size', 'maxSize'], ['max-steps', 'maxSteps'], ['max-batch', 'maxBatch'], ['max-queue', 'maxQueue'], ['max-concurrent', 'maxConcurrent'], ['body-limit', 'bodyLimit']] as const) {
      const v = positive(args, flag, flag === 'max-size' ? 64 : flag === 'body-limit' ? 1024 : 1);
      if (v !== undefined) limits[key] = v;
    }
    const port = o.port as number | undefined;
    if (port !== undefined && (port < 0 || port > 65535)) throw new UsageError(`--port must be from 0 to 65535 (got ${port})`);
    const log = logger(ctx, o.quiet === true);
    const { createServer } = await import('../../server/app');
    let server;
    try {
      server = await createServer({
        models: o.model as string[] | undefined,
        modelDirs: o['model-dir'] as string[] | undefined,
        host: o.host as string | undefined,
        port,
        apiKey,
        limits,
        resultTtlMs: (positive(args, 'result-ttl') ?? 600) * 1000,
        memoryBudgetBytes: o['memory-budget'] !== undefined ? (positive(args, 'memory-budget') as number) * 2 ** 20 : undefined,
        load: loadOptions(args),
        queue: o.queue as string | undefined,
        adapterDirs: adapterDirs(args),
        attempts: positive(args, 'attempts'),
        log,
      });
    } catch (err) {
      if (err instanceof Error && err.constructor === Error) throw new UsageError(`serve: ${err.message}`);
      throw err;
    }
    ctx.stdout.write(`sdnode serve: ${server.url}\n`);
    const why = await stopSignal(ctx);
    const grace = (positive(args, 'shutdown-grace', 0) ?? 30) * 1000;
    log(`${why}: shutting down (running jobs get ${grace / 1000} s to finish; press Ctrl-C again to quit at once)`);
    const s = await server.close(grace);
    log(`shut down: ${s.finished.length} running job(s) finished${s.finished.length ? ` (${s.finished.join(', ')})` : ''}, ` +
      `${s.cancelled.length} cancelled${s.cancelled.length ? ` (${s.cancelled.join(', ')})` : ''}` +
      (server.backend.mode === 'redis' ? `; jobs stay in the Redis queue for the workers${s.leftQueued.length ? ` (${s.leftQueued.join(', ')})` : ''}` : ''));
    return 0;
  },
};
