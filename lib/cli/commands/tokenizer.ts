/**
 * `sdnode get-tokenizer`: puts the standard CLIP merges into the per-user cache (one-time, on request).
 * @internal
 * @packageDocumentation
 */
import { downloadTokenizer, tokenizerCachePath } from '../../tokenizer';
import type { Command } from '../command';

export const tokenizerCommand: Command = {
  name: 'get-tokenizer',
  summary: 'optional: a per-user copy of the CLIP tokenizer merges (sdnode ships them; this copy takes precedence)',
  usage: 'sdnode get-tokenizer [--url URL_OR_FILE] [--force] [--json]',
  description:
    `Fetches the standard CLIP BPE merges once, checks them against their known SHA-256 and writes them to\n` +
    `${tokenizerCachePath()} (directory from $SDNODE_CACHE_DIR when set). Not needed for a first run: the package\n` +
    'ships the same merges and uses them for models without their own; a per-user copy is used before the shipped\n' +
    'one. Nothing is downloaded unless you run this command.',
  positionals: 0,
  options: [
    { name: 'url', type: 'string', arg: 'URL', description: 'fetch from this URL or local file instead of the public copies' },
    { name: 'force', type: 'boolean', description: 'download again even if a valid copy is cached' },
    { name: 'json', type: 'boolean', description: 'print the result as JSON on stdout' },
  ],

  async run(args, ctx) {
    const r = await downloadTokenizer({
      url: typeof args.options.url === 'string' ? args.options.url : undefined,
      force: args.options.force === true,
      signal: ctx.signal,
    });
    if (args.options.json) ctx.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else ctx.stdout.write(r.downloaded ? `saved CLIP merges from ${r.source} to ${r.path}\n` : `CLIP merges already cached at ${r.path}\n`);
    return 0;
  },
};
