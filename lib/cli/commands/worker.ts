/**
 * `sdnode worker`: takes jobs from the Redis queue of `sdnode serve --queue` and runs them (lib/server/redis.ts).
 * @internal
 * @packageDocumentation
 */
import { UsageError } from '../args';
import type { Command } from '../command';
import { adapterDirs, GRACE, loadOptions, logger, MODEL_OPTIONS, positive, stopSignal } from './serve';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'take jobs from a `sdnode serve --queue` Redis queue and run them',
  usage: 'sdnode worker --queue redis://HOST --model FILE [options]',
  description:
    'Runs jobs from the Redis queue of `sdnode serve --queue URL`, one at a time, on the models given here (start\n' +
    'every worker with the same models). Progress, previews and results go back through Redis. If a worker dies,\n' +
    'its job goes back to the queue after --stall-timeout and another worker runs it. Ctrl-C/SIGTERM: the running\n' +
    'job may finish within --shutdown-grace, otherwise it is handed back to the queue.',
  positionals: 0,
  options: [
    { name: 'queue', type: 'string', arg: 'URL', description: 'redis://HOST[:PORT][/DB] of the server', required: true },
    ...MODEL_OPTIONS,
    { name: 'stall-timeout', type: 'integer', arg: 'S', description: 'seconds after which the job of a worker that stopped answering goes to another worker', default: '30' },
    { name: 'max-stalled', type: 'integer', arg: 'N', description: 'times a job is handed on after a worker died before it fails', default: '1' },
    GRACE,
    { name: 'quiet', short: 'q', type: 'boolean', description: 'no log lines on stderr' },
  ],

  async run(args, ctx) {
    const o = args.options;
    const log = logger(ctx, o.quiet === true);
    const { discoverModels, ModelPool } = await import('../../server/models');
    const os = await import('os');
    let entries;
    try {
      entries = discoverModels((o.model as string[] | undefined) ?? [], (o['model-dir'] as string[] | undefined) ?? []);
    } catch (err) {
      throw new UsageError(`worker: ${(err as Error).message}`);
    }
    const budget = o['memory-budget'] !== undefined ? (positive(args, 'memory-budget') as number) * 2 ** 20 : Math.floor(os.totalmem() / 2);
    const load = loadOptions(args);
    let pool;
    try {
      pool = new ModelPool(entries, { budgetBytes: budget, load, log, adapterDirs: adapterDirs(args) });
    } catch (err) {
      throw new UsageError(`worker: ${(err as Error).message}`);
    }
    const { startWorker } = await import('../../server/redis');
    const worker = await startWorker({
      url: o.queue as string,
      pool,
      stallMs: (positive(args, 'stall-timeout') ?? 30) * 1000,
      maxStalled: positive(args, 'max-stalled', 0) ?? 1,
      log,
    });
    ctx.stdout.write(`sdnode worker: ${worker.id}\n`);
    const why = await stopSignal(ctx);
    const grace = (positive(args, 'shutdown-grace', 0) ?? 30) * 1000;
    log(`${why}: stopping (the running job gets ${grace / 1000} s to finish)`);
    const s = await worker.close(grace);
    log(`stopped: ${s.finished.length} job(s) finished, ${s.requeued.length} handed back to the queue${s.requeued.length ? ` (${s.requeued.join(', ')})` : ''}`);
    return 0;
  },
};
