/**
 * The CLIP BPE merges that SD1.x text encoding needs, in a per-user cache.
 *
 * Model files often do not carry the tokenizer (single-file `.safetensors` checkpoints never do). The engine looks
 * for merges in this order: `tokenizerPath`, merges embedded in a GGUF file, `tokenizer/merges.txt` in a diffusers
 * folder or next to the model, the per-user cache at {@link tokenizerCachePath}, and finally the standard CLIP
 * merges shipped in the package ({@link shippedMergesPath}, gzip, checked against {@link CLIP_MERGES_SHA256}), so a
 * plain `.safetensors` checkpoint loads with no tokenizer step. {@link downloadTokenizer} (optional) fills the
 * per-user cache from the public copy of the standard CLIP merges and checks the content before writing it.
 * @packageDocumentation
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';

import { AbortError, InvalidOptionError, SdnodeError } from './errors';

/**
 * Where the standard CLIP merges are published: the tokenizer of openai/clip-vit-large-patch14 (a plain
 * `merges.txt`) and OpenAI's CLIP repository (`bpe_simple_vocab_16e6.txt.gz`, which holds more merges than CLIP
 * uses; the first 48 894 are kept). Tried in order.
 */
export const CLIP_MERGES_URLS: readonly string[] = [
  'https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/merges.txt',
  'https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz',
];

/** Number of merges SD1.x's CLIP uses (vocabulary 49 408 = 256 + 256 + 48 894 + 2). */
export const CLIP_MERGE_COUNT = 48894;

/** SHA-256 of the cached file: `#version: 0.2` + the 48 894 merges, one per line, each ending in `\n`. */
export const CLIP_MERGES_SHA256 = '9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a';

/** The compressed CLIP merges table shipped in the package: `<package>/data/clip-bpe-merges.txt.gz`. */
export function shippedMergesPath(): string {
  return path.join(__dirname, '..', 'data', 'clip-bpe-merges.txt.gz');
}

let shipped: Promise<string> | undefined;

/**
 * The shipped CLIP merges as the engine reads them (decompressed off the JavaScript thread, checked against
 * {@link CLIP_MERGES_SHA256}, kept in memory after the first call). Rejects with an `SdnodeError` (code
 * `InvalidFile`/`NotFound`) when the file is missing or altered.
 * @internal
 */
export function shippedMerges(): Promise<string> {
  if (!shipped) {
    const file = shippedMergesPath();
    shipped = fs.promises
      .readFile(file)
      .then(
        (gz) =>
          new Promise<Buffer>((resolve, reject) =>
            zlib.gunzip(gz, { maxOutputLength: 64 << 20 }, (err, out) => (err ? reject(err) : resolve(out))),
          ),
      )
      .then(
        (buf) => {
          const text = buf.toString('utf8');
          if (sha256(text) !== CLIP_MERGES_SHA256) {
            throw new SdnodeError(`${file}: content differs from the standard CLIP merges; reinstall sdnode`, 'InvalidFile');
          }
          return text;
        },
        (err: NodeJS.ErrnoException) => {
          throw new SdnodeError(
            `the CLIP merges shipped with sdnode could not be read (${file}: ${err.message}); reinstall sdnode, or pass tokenizerPath (--tokenizer)`,
            err.code === 'ENOENT' ? 'NotFound' : 'InvalidFile',
            { cause: err },
          );
        },
      );
    shipped.catch(() => {
      shipped = undefined; // retry on the next call
    });
  }
  return shipped;
}

/**
 * The merges to hand the engine as its last resort: the shipped table, unless an explicit merges file is given
 * (then nothing is needed). A missing or damaged shipped table is not fatal here: the engine then reports which
 * tokenizer sources it tried.
 * @internal
 */
export async function fallbackMergesFor(explicitTokenizer: string | undefined): Promise<string> {
  if (explicitTokenizer) return '';
  try {
    return await shippedMerges();
  } catch {
    return '';
  }
}

/** The per-user merges file the engine reads: `$SDNODE_CACHE_DIR/clip-merges.txt`, else `~/.cache/sdnode/clip-merges.txt`. */
export function tokenizerCachePath(): string {
  const dir = process.env.SDNODE_CACHE_DIR;
  if (dir) return path.join(dir, 'clip-merges.txt');
  return path.join(os.homedir(), '.cache', 'sdnode', 'clip-merges.txt');
}

/** Options of {@link downloadTokenizer}. */
export interface DownloadTokenizerOptions {
  /** Source(s) to try in order instead of {@link CLIP_MERGES_URLS}. A local file path is accepted too. */
  url?: string | readonly string[];
  /** Download again even if the cache already holds valid merges. Default false. */
  force?: boolean;
  /** Aborts the download; the promise rejects with `AbortError` and nothing is written. */
  signal?: AbortSignal;
}

/** What {@link downloadTokenizer} did. */
export interface DownloadTokenizerResult {
  /** The cache file. */
  path: string;
  /** False when a valid cached copy was already there. */
  downloaded: boolean;
  /** Where the merges came from (`'cache'` when nothing was downloaded). */
  source: string;
  sha256: string;
}

/**
 * Turns a merges file as published (plain or gzip, with extra merges, CRLF line ends) into the canonical text the
 * engine reads, or throws if it is not a CLIP merges file.
 * @internal
 */
export function normaliseMerges(raw: Buffer, source: string): string {
  let data = raw;
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) {
    try {
      data = zlib.gunzipSync(data, { maxOutputLength: 64 << 20 });
    } catch (err) {
      throw new SdnodeError(`${source}: not a valid gzip file (${(err as Error).message})`, 'InvalidFile');
    }
  }
  const lines = data.toString('utf8').split(/\r?\n/);
  if (!lines[0]?.startsWith('#version')) {
    throw new SdnodeError(`${source}: not a CLIP merges file (the first line should start with "#version")`, 'InvalidFile');
  }
  const merges = lines.slice(1, 1 + CLIP_MERGE_COUNT);
  if (merges.length < CLIP_MERGE_COUNT || merges.some((m) => m.split(' ').length !== 2)) {
    throw new SdnodeError(
      `${source}: expected ${CLIP_MERGE_COUNT} merges of two symbols each after the "#version" line`,
      'InvalidFile',
    );
  }
  return ['#version: 0.2', ...merges].join('\n') + '\n';
}

function sha256(text: string): string {
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The largest merges file read (plain or gzip): the CLIP list is ~520 KB, the long OpenAI one ~1.6 MB. */
const MAX_MERGES_FILE_BYTES = 64 << 20;

function kindOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

/**
 * A local file's bytes, never blocking on a special file: opened without blocking (a FIFO without a writer opens
 * at once), then refused unless it is a regular file, and refused above `MAX_MERGES_FILE_BYTES`. `option` names
 * where the path came from, for the message.
 */
async function readRegularFile(file: string, option: string): Promise<Buffer> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SdnodeError(`${file}: no such file (${option})`, 'NotFound', { cause: err });
    if (code === 'ENXIO') throw new SdnodeError(`${file}: a socket, not a regular file (${option} takes an http(s) URL or a merges file)`, 'InvalidFile', { cause: err });
    throw new SdnodeError(`${file}: ${(err as Error).message}`, 'Io', { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new SdnodeError(`${file}: ${kindOf(st)}, not a regular file (${option} takes an http(s) URL or a merges file)`, 'InvalidFile');
    }
    if (st.size > MAX_MERGES_FILE_BYTES) {
      throw new SdnodeError(`${file}: ${st.size} bytes, not a CLIP merges file (those are under ${MAX_MERGES_FILE_BYTES >> 20} MiB)`, 'InvalidFile');
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

async function fetchSource(source: string, signal?: AbortSignal): Promise<Buffer> {
  if (!/^https?:\/\//i.test(source)) return readRegularFile(source, 'url / --url');
  const res = await fetch(source, { signal, redirect: 'follow' });
  if (!res.ok) throw new SdnodeError(`${source}: HTTP ${res.status} ${res.statusText}`, 'Io');
  return Buffer.from(await res.arrayBuffer());
}

/**
 * Puts the standard CLIP merges into the per-user cache ({@link tokenizerCachePath}) so that models without an
 * embedded tokenizer load. Does nothing when a valid copy is already cached (unless `force`). The content must
 * match {@link CLIP_MERGES_SHA256}; the file is written atomically.
 *
 * @example
 * ```js
 * const { downloadTokenizer } = require('sdnode');
 * const r = await downloadTokenizer();
 * console.log(r.downloaded ? `saved to ${r.path}` : `already at ${r.path}`);
 * ```
 * @throws {@link AbortError} when `signal` aborts; {@link SdnodeError} (code `Io` or `InvalidFile`) when no source
 * gave the expected content — the message lists each source and why it failed.
 */
export async function downloadTokenizer(options: DownloadTokenizerOptions = {}): Promise<DownloadTokenizerResult> {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(`expected an object for options but received ${String(options)} (${typeof options})`, 'options');
  }
  const urls = options.url === undefined ? CLIP_MERGES_URLS : typeof options.url === 'string' ? [options.url] : options.url;
  if (!Array.isArray(urls) || urls.length === 0 || urls.some((u) => typeof u !== 'string' || u.length === 0)) {
    throw new InvalidOptionError(
      `expected a non-empty string or array of strings for url but received ${JSON.stringify(options.url)}`,
      'url',
    );
  }
  const file = tokenizerCachePath();
  if (!options.force) {
    try {
      // (a FIFO or device at the cache path is refused here, not waited on, and replaced by the download)
      const cached = (await readRegularFile(file, 'the tokenizer cache')).toString('utf8');
      const h = sha256(cached);
      if (h === CLIP_MERGES_SHA256) return { path: file, downloaded: false, source: 'cache', sha256: h };
    } catch {
      /* not cached yet */
    }
  }
  const failures: string[] = [];
  for (const source of urls) {
    if (options.signal?.aborted) throw new AbortError('tokenizer download aborted');
    try {
      const text = normaliseMerges(await fetchSource(source, options.signal), source);
      const h = sha256(text);
      if (h !== CLIP_MERGES_SHA256) {
        failures.push(`${source}: content differs from the standard CLIP merges (sha256 ${h})`);
        continue;
      }
      await fs.promises.mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      await fs.promises.writeFile(tmp, text);
      await fs.promises.rename(tmp, file);
      return { path: file, downloaded: true, source, sha256: h };
    } catch (err) {
      if (options.signal?.aborted || (err as Error)?.name === 'AbortError') {
        throw new AbortError('tokenizer download aborted', { cause: err });
      }
      failures.push((err as Error).message);
    }
  }
  throw new SdnodeError(
    `could not get the CLIP merges: ${failures.join('; ')}. ` +
      `Without network access, copy a merges.txt (e.g. the tokenizer/merges.txt of an SD1.x diffusers folder) to ${file}, ` +
      'or pass tokenizerPath when loading.',
    failures.some((f) => f.includes('differs') || f.includes('not a')) ? 'InvalidFile' : 'Io',
  );
}
