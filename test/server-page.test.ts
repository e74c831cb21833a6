/// <reference lib="dom" />
// The web page at `/`, driven in headless Chromium (the Debian `chromium` binary through puppeteer-core): generate
// with live progress and preview, the result image, cancel, and the API-key field. Skips with a message when no
// Chromium is installed (.ci/run installs the Debian package).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Browser } from 'puppeteer-core';
import { createServer, type SdnodeServer } from '../lib/server/app';
import { loadFakeModel } from '../lib/testing';
import { tinyModel, tinySkipReason } from './helpers/tiny';

jest.setTimeout(180_000);

const CANDIDATES = [process.env.SDNODE_TEST_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter(Boolean) as string[];
const chromium = CANDIDATES.find((p) => fs.existsSync(p));
const skip = !chromium ? `SKIPPED: no Chromium found (${CANDIDATES.join(', ')}; Debian package chromium, which .ci/run installs)` : tinySkipReason();
if (skip) console.warn(`server-page.test.ts: ${skip}`);
const describePage = skip ? describe.skip : describe;

describePage(`web page in headless Chromium${skip ? ` (${skip})` : ''}`, () => {
  let browser: Browser;
  let server: SdnodeServer;
  let fakeServer: SdnodeServer;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-page-'));

  beforeAll(async () => {
    const tiny = tinyModel();
    server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges }, apiKey: 'k3y' });
    fs.writeFileSync(path.join(dir, 'slow.safetensors'), 'x');
    fakeServer = await createServer({ models: [path.join(dir, 'slow.safetensors')], port: 0, loader: () => loadFakeModel({ stepMs: 100 }) });
    const puppeteer = (await import('puppeteer-core')).default;
    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${path.join(dir, 'profile')}`],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close(0);
    await fakeServer?.close(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('generate: progress, preview and the result image; the API key travels in a header', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(server.url);
    // without the key the model list cannot load
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.includes('API key'));
    await page.type('#apiKey', 'k3y');
    await page.$eval('#apiKey', (e) => e.dispatchEvent(new Event('change')));
    await page.waitForFunction(() => (document.getElementById('model') as HTMLSelectElement).options.length === 1);
    expect(await page.$eval('#model', (e) => (e as HTMLSelectElement).value)).toBe('tiny-sd1');
    for (const [id, v] of [['#width', '64'], ['#height', '64'], ['#steps', '12'], ['#seed', '9']]) {
      await page.$eval(id, (e, val) => ((e as HTMLInputElement).value = val as string), v);
    }
    // record the preview as soon as it shows up
    await page.evaluate(() => {
      const w = window as unknown as { previewSeen: boolean };
      w.previewSeen = false;
      new MutationObserver(() => {
        const p = document.getElementById('preview') as HTMLImageElement;
        if (!p.hidden && p.src.startsWith('data:image/png')) w.previewSeen = true;
      }).observe(document.getElementById('preview')!, { attributes: true });
    });
    await page.click('#generate');
    await page.waitForSelector('img.result', { timeout: 60_000 });
    const status = await page.$eval('#status', (e) => e.textContent);
    expect(status).toMatch(/^done in [\d.]+ s, seed 9$/);
    expect(await page.$eval('#bar', (e) => (e as HTMLProgressElement).value)).toBe(1);
    expect(await page.evaluate(() => (window as unknown as { previewSeen: boolean }).previewSeen)).toBe(true);
    const size = await page.$eval('img.result', async (e) => {
      const img = e as HTMLImageElement;
      await img.decode();
      return [img.naturalWidth, img.naturalHeight];
    });
    expect(size).toEqual([64, 64]);
    expect(requests.some((u) => u.includes('k3y'))).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
  });

  test('cancel stops a running job and says so', async () => {
    const page = await browser.newPage();
    await page.goto(fakeServer.url);
    await page.waitForFunction(() => (document.getElementById('model') as HTMLSelectElement).options.length === 1);
    await page.$eval('#steps', (e) => ((e as HTMLInputElement).value = '100'));
    await page.click('#generate');
    await page.waitForFunction(() => /^sample \d+\/100/.test(document.getElementById('status')!.textContent!));
    await page.click('#cancel');
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.startsWith('cancelled'));
    expect(await page.$eval('#generate', (e) => (e as HTMLButtonElement).disabled)).toBe(false);
    const id = await page.evaluate(() => document.body.dataset.job);
    expect(fakeServer.store.get(id!)!.status).toBe('cancelled');
    await page.close();
  });

  test('a bad value shows the server\'s message', async () => {
    const page = await browser.newPage();
    await page.goto(fakeServer.url);
    await page.waitForFunction(() => (document.getElementById('model') as HTMLSelectElement).options.length === 1);
    await page.$eval('#steps', (e) => ((e as HTMLInputElement).value = '500'));
    await page.click('#generate');
    await page.waitForFunction(() => document.getElementById('status')!.className.includes('error'));
    expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/--max-steps/);
    await page.close();
  });
});
