// downloadTokenizer / `sdnode get-tokenizer`: fills the per-user CLIP merges cache, verified by SHA-256.
// Served from a loopback HTTP server; the real merges come from ../shared/data (skipped visibly if absent).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';

import { AbortError, SdnodeError } from '../lib/errors';
import { CLIP_MERGES_SHA256, downloadTokenizer, normaliseMerges, tokenizerCachePath } from '../lib/tokenizer';

const repoRoot = path.resolve(__dirname, '..');
const sharedDir = process.env.SDNODE_SHARED_DIR ? path.resolve(process.env.SDNODE_SHARED_DIR) : path.resolve(repoRoot, '..', 'shared');
const mergesGz = path.join(sharedDir, 'data', 'clip-bpe-merges.txt.gz');
const haveShared = fs.existsSync(mergesGz);

let server: http.Server;
let base = '';
const routes = new Map<string, { status: number; body: Buffer; delayMs?: number }>();
const savedCacheDir = process.env.SDNODE_CACHE_DIR;
let cacheDir = '';

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const r = routes.get(req.url ?? '');
    if (!r) {
      res.writeHead(404).end('not found');
      return;
    }
    setTimeout(() => {
      if (!res.destroyed) res.writeHead(r.status).end(r.body);
    }, r.delayMs ?? 0).unref();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (savedCacheDir === undefined) delete process.env.SDNODE_CACHE_DIR;
  else process.env.SDNODE_CACHE_DIR = savedCacheDir;
});

beforeEach(() => {
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-tok-'));
  process.env.SDNODE_CACHE_DIR = cacheDir;
});
afterEach(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

test('cache path follows SDNODE_CACHE_DIR', () => {
  expect(tokenizerCachePath()).toBe(path.join(cacheDir, 'clip-merges.txt'));
});

test('a file that is not a merges list is refused before anything is written', async () => {
  routes.set('/junk.txt', { status: 200, body: Buffer.from('<html>hello</html>\n') });
  routes.set('/short.txt', { status: 200, body: Buffer.from('#version: 0.2\na b\nc d\n') });
  const err = await downloadTokenizer({ url: [`${base}/junk.txt`, `${base}/short.txt`, `${base}/missing`] }).catch((e) => e);
  expect(err).toBeInstanceOf(SdnodeError);
  expect(err.code).toBe('InvalidFile');
  expect(err.message).toMatch(/junk\.txt: not a CLIP merges file/);
  expect(err.message).toMatch(/short\.txt: expected 48894 merges/);
  expect(err.message).toMatch(/missing: HTTP 404/);
  expect(err.message).toMatch(/copy a merges\.txt/);
  expect(fs.existsSync(tokenizerCachePath())).toBe(false);
});

test('network failure is an Io error naming the source', async () => {
  const err = await downloadTokenizer({ url: `${base}/nothing-here` }).catch((e) => e);
  expect(err).toBeInstanceOf(SdnodeError);
  expect(err.code).toBe('Io');
});

test('bad options are rejected', async () => {
  await expect(downloadTokenizer({ url: [] })).rejects.toThrow(/expected a non-empty string or array of strings for url/);
});

test('corrupt gzip is an InvalidFile error', () => {
  expect(() => normaliseMerges(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'x.gz')).toThrow(/not a valid gzip file/);
});

if (!haveShared) {
  test.skip(`real-merges download tests SKIPPED: ${mergesGz} not found (set SDNODE_SHARED_DIR)`, () => undefined);
} else {
  const gz = fs.readFileSync(mergesGz);
  const text = zlib.gunzipSync(gz).toString('utf8');

  test('downloads, verifies and caches; a second call uses the cache', async () => {
    routes.set('/merges.txt.gz', { status: 200, body: gz });
    const r = await downloadTokenizer({ url: `${base}/merges.txt.gz` });
    expect(r).toEqual({ path: tokenizerCachePath(), downloaded: true, source: `${base}/merges.txt.gz`, sha256: CLIP_MERGES_SHA256 });
    expect(fs.readFileSync(r.path, 'utf8')).toBe(text);
    const again = await downloadTokenizer({ url: `${base}/never-asked` });
    expect(again.downloaded).toBe(false);
    expect(again.source).toBe('cache');
  });

  test('the long OpenAI list (extra merges, CRLF) is cut to the 48 894 CLIP uses', async () => {
    const long = text.replace(/\n/g, '\r\n') + 'zz yy\r\nxx ww\r\n';
    routes.set('/long.txt.gz', { status: 200, body: zlib.gzipSync(Buffer.from(long)) });
    const r = await downloadTokenizer({ url: `${base}/long.txt.gz` });
    expect(r.downloaded).toBe(true);
    expect(fs.readFileSync(r.path, 'utf8')).toBe(text);
  });

  test('content with a changed merge fails the hash check', async () => {
    const lines = text.split('\n');
    lines[10] = 'q z';
    routes.set('/tampered.txt', { status: 200, body: Buffer.from(lines.join('\n')) });
    const err = await downloadTokenizer({ url: `${base}/tampered.txt` }).catch((e) => e);
    expect(err.code).toBe('InvalidFile');
    expect(err.message).toMatch(/differs from the standard CLIP merges/);
  });

  test('abort rejects with AbortError and writes nothing', async () => {
    routes.set('/slow.txt.gz', { status: 200, body: gz, delayMs: 2000 });
    const ac = new AbortController();
    const p = downloadTokenizer({ url: `${base}/slow.txt.gz`, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toBeInstanceOf(AbortError);
    expect(fs.existsSync(tokenizerCachePath())).toBe(false);
  });

  test('sdnode get-tokenizer --url FILE --json', () => {
    const cli = path.join(repoRoot, 'dist', 'cli', 'cli.js');
    if (!fs.existsSync(cli)) throw new Error(`${cli} missing: run npm run build`);
    const r = spawnSync(process.execPath, [cli, 'get-tokenizer', '--url', mergesGz, '--json'], {
      encoding: 'utf8',
      env: { ...process.env, SDNODE_CACHE_DIR: cacheDir },
    });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.downloaded).toBe(true);
    expect(out.path).toBe(path.join(cacheDir, 'clip-merges.txt'));
    const bad = spawnSync(process.execPath, [cli, 'get-tokenizer', '--url'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
  });
}
