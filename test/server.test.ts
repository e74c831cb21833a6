// `sdnode serve` in local mode (lib/server/): the job API with SSE, A1111 and OpenAI endpoints, limits, model
// names (never paths), the API key, cancellation, LRU model unloading and graceful shutdown. Servers run in this
// process on 127.0.0.1 and a free port, on the tiny generated models (real engine) or the addon's fake engine
// (sleeps instead of computing: long jobs for cancellation without CPU load).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadModel } from '../lib/model';
import { createServer, type SdnodeServer, type ServerOptions } from '../lib/server/app';
import { loadFakeModel } from '../lib/testing';
import { readText } from './helpers/png';
import { cliPath, ensureDist } from './helpers/dist';
import { readEvents } from './helpers/sse';
import { writeTinyTaesd } from './helpers/taesd';
import { writeTinyControlNet } from './helpers/controlnet';
import { describeTiny, repoRoot, tinyModel, type TinyModel } from './helpers/tiny';

jest.setTimeout(120_000);

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { headers });
  return { status: res.status, json: await res.json() };
}

const small = { prompt: 'a red fox', width: 64, height: 64, steps: 3, seed: 5 };

describeTiny('sdnode serve on a tiny model', () => {
  let tiny: TinyModel;
  let server: SdnodeServer;
  let url: string;
  const log: string[] = [];
  beforeAll(async () => {
    tiny = tinyModel();
    server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges }, limits: { maxSteps: 50, maxSize: 256, maxBatch: 4, bodyLimit: 1 << 20 }, log: (l) => log.push(l) });
    url = server.url;
  });
  afterAll(async () => {
    await server?.close(1000);
  });

  test('binds 127.0.0.1 by default', () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('POST /v1/jobs returns an id at once; the SSE stream carries progress, previews and the result', async () => {
    const r = await post(`${url}/v1/jobs`, { ...small, steps: 4, previewEvery: 1 });
    expect(r.status).toBe(202);
    expect(r.json.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json.links.events).toBe(`/v1/jobs/${r.json.id}/events`);
    const events = await readEvents(`${url}${r.json.links.events}`);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('status');
    expect(types[types.length - 1]).toBe('result');
    const steps = events.filter((e) => e.type === 'progress' && e.data.phase === 'sample');
    // A stream opened after the job began may miss early steps, but the last sampling step is always seen.
    expect(steps.length).toBeGreaterThan(0);
    expect(steps[steps.length - 1].data).toMatchObject({ step: 4, steps: 4 });
    for (const s of steps) expect(s.data.fraction).toBeGreaterThanOrEqual(0);
    const result = events[events.length - 1].data;
    expect(result.status).toBe('succeeded');
    expect(result.images).toHaveLength(1);
    expect(result.parameters).toMatchObject({ prompt: 'a red fox', width: 64, height: 64, steps: 4, seed: 5, model: 'tiny-sd1' });
    const img = await fetch(`${url}${result.images[0].url}`);
    expect(img.headers.get('content-type')).toBe('image/png');
    const png = Buffer.from(await img.arrayBuffer());
    expect(readText(png).parameters).toContain('Seed: 5, Size: 64x64');
    // Polling gives the same record, with its expiry.
    const g = await get(`${url}/v1/jobs/${r.json.id}`);
    expect(g.json.status).toBe('succeeded');
    expect(typeof g.json.expiresAt).toBe('string');
    // A stream opened after the end replays the outcome and closes.
    const late = await readEvents(`${url}${r.json.links.events}`);
    expect(late.map((e) => e.type)).toEqual(['status', 'result']);
  });

  test('previews reach the stream while sampling (small PNG or WebP data URLs, every previewEvery steps)', async () => {
    const r = await post(`${url}/v1/jobs`, { ...small, steps: 20, previewEvery: 1 });
    const events = await readEvents(`${url}/v1/jobs/${r.json.id}/events`);
    const previews = events.filter((e) => e.type === 'preview');
    expect(previews.length).toBeGreaterThan(0);
    expect(previews[0].data.image).toMatch(/^data:image\/png;base64,iVBOR/);
    const w = await post(`${url}/v1/jobs`, { ...small, steps: 20, previewEvery: 2, previewFormat: 'webp' });
    const wEvents = await readEvents(`${url}/v1/jobs/${w.json.id}/events`);
    const wPreviews = wEvents.filter((e) => e.type === 'preview');
    expect(wPreviews.length).toBeGreaterThan(0);
    expect(wPreviews[0].data.image).toMatch(/^data:image\/webp;base64,/);
    for (const p of wPreviews) expect(p.data.step % 2).toBe(0);
  });

  test('A1111 txt2img gives the same image as the library API, with parameters and info', async () => {
    const r = await post(`${url}/sdapi/v1/txt2img`, { prompt: 'a red fox', width: 64, height: 64, steps: 3, seed: 5, sampler_name: 'Euler a', cfg_scale: 7, batch_size: 2, restore_faces: false, enable_hr: false });
    expect(r.status).toBe(200);
    expect(r.json.images).toHaveLength(2);
    expect(r.json.parameters.prompt).toBe('a red fox');
    const info = JSON.parse(r.json.info);
    expect(info.all_seeds).toEqual([5, 6]);
    expect(info.sampler_name).toBe('Euler a');
    expect(info.infotexts[0]).toContain('Seed: 5');
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    try {
      const direct = await model.generate({ prompt: 'a red fox', width: 64, height: 64, steps: 3, seed: 5, sampler: 'euler_a', cfgScale: 7, batchCount: 2 });
      const sharp = (await import('sharp')).default;
      for (let i = 0; i < 2; i++) {
        const raw = await sharp(Buffer.from(r.json.images[i], 'base64')).raw().toBuffer();
        expect(raw.equals(direct.images[i].data)).toBe(true);
      }
    } finally {
      await model.dispose();
    }
  });

  test('img2img and inpainting: A1111 /sdapi/v1/img2img and the job API give the library API\'s pixels', async () => {
    const sharp = (await import('sharp')).default;
    const init = await sharp({ create: { width: 96, height: 80, channels: 3, background: { r: 200, g: 60, b: 20 } } }).png().toBuffer();
    const mask = await sharp({ create: { width: 96, height: 80, channels: 3, background: { r: 255, g: 255, b: 255 } } }).png().toBuffer();
    const a = await post(`${url}/sdapi/v1/img2img`, { prompt: 'a red fox', width: 64, height: 64, steps: 4, seed: 5, init_images: [init.toString('base64')], denoising_strength: 0.5 });
    expect(a.status).toBe(200);
    expect(a.json.parameters.init_images).toBeUndefined();
    expect(JSON.parse(a.json.info).denoising_strength).toBe(0.5);
    const j = await post(`${url}/v1/jobs`, { prompt: 'a red fox', width: 64, height: 64, steps: 4, seed: 5, initImage: `data:image/png;base64,${init.toString('base64')}`, mask: mask.toString('base64'), strength: 0.5, maskBlur: 2 });
    expect(j.status).toBe(202);
    const events = await readEvents(`${url}/v1/jobs/${j.json.id}/events`);
    const result = events[events.length - 1].data;
    expect(result.status).toBe('succeeded');
    expect(result.parameters).toMatchObject({ strength: 0.5, maskBlur: 2 });
    expect(result.parameters.initImage).toBeUndefined();
    const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
    try {
      const base = { prompt: 'a red fox', width: 64, height: 64, steps: 4, seed: 5, strength: 0.5 };
      const d1 = await model.generate({ ...base, initImage: init });
      const served = await sharp(Buffer.from(a.json.images[0], 'base64')).raw().toBuffer();
      expect(served.equals(d1.images[0].data)).toBe(true);
      const { strength: _s, ...txt } = base;
      expect(served.equals((await model.generate(txt)).images[0].data)).toBe(false); // the init image was used
      const d2 = await model.generate({ ...base, initImage: init, mask, maskBlur: 2 });
      const png = Buffer.from(await (await fetch(`${url}${result.images[0].url}`)).arrayBuffer());
      expect((await sharp(png).raw().toBuffer()).equals(d2.images[0].data)).toBe(true);
    } finally {
      await model.dispose();
    }
  });

  test('img2img inputs are base64 images, never paths; bad ones are 400s naming the field', async () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/sdapi/v1/img2img', { prompt: 'x', init_images: ['/etc/passwd'] }, 'init_images'],
      ['/sdapi/v1/img2img', { prompt: 'x', init_images: ['not base64!'] }, 'init_images'],
      ['/sdapi/v1/img2img', { prompt: 'x', init_images: [Buffer.from('GIF89a junk').toString('base64')] }, 'init_images'],
      ['/v1/jobs', { prompt: 'x', initImage: path.join(__dirname, 'fixtures', 'x.png') }, 'initImage'],
      ['/v1/jobs', { prompt: 'x', mask: 'AAAA' }, 'mask'],
      ['/v1/jobs', { prompt: 'x', strength: 0.5 }, 'strength'],
    ];
    for (const [route, body, param] of cases) {
      const r = await post(`${url}${route}`, { width: 64, height: 64, steps: 1, ...body });
      expect([route, body, r.status, r.json.error?.param]).toEqual([route, body, 400, param]);
    }
    const noInit = await post(`${url}/sdapi/v1/img2img`, { prompt: 'x' });
    expect(noInit.status).toBe(400);
  });

  test('A1111 sampler labels, old "X Karras" labels and unknown ones', async () => {
    const ok = await post(`${url}/sdapi/v1/txt2img`, { ...small, sampler_name: 'DPM++ 2M Karras' });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.json.info).scheduler).toBe('karras');
    const bad = await post(`${url}/sdapi/v1/txt2img`, { ...small, sampler_name: 'UniPC' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.param).toBe('sampler_name');
    expect(bad.json.error.message).toMatch(/GET \/sdapi\/v1\/samplers/);
    const hr = await post(`${url}/sdapi/v1/txt2img`, { ...small, enable_hr: true });
    expect(hr.status).toBe(400);
  });

  test('A1111 listing endpoints', async () => {
    const models = await get(`${url}/sdapi/v1/sd-models`);
    expect(models.json).toEqual([expect.objectContaining({ title: 'tiny-sd1', model_name: 'tiny-sd1', filename: 'tiny-sd1.safetensors' })]);
    expect(JSON.stringify(models.json)).not.toContain(path.dirname(tiny.safetensors)); // no server paths leak
    const samplers = await get(`${url}/sdapi/v1/samplers`);
    expect(samplers.json.map((s: { name: string }) => s.name)).toEqual(['Euler a', 'Euler', 'Heun', 'DPM2', 'DPM++ 2S a', 'DPM++ 2M', 'LCM', 'DDIM', 'DDIM Trailing', 'iPNDM', 'TCD']);
    const schedulers = await get(`${url}/sdapi/v1/schedulers`);
    expect(schedulers.json.map((s: { name: string }) => s.name)).toEqual(['automatic', 'karras', 'exponential', 'simple', 'sgm_uniform', 'align_your_steps', 'lcm']);
    const progress = await get(`${url}/sdapi/v1/progress`);
    expect(progress.json).toMatchObject({ progress: 0, state: { job_count: 0 } });
    const oa = await get(`${url}/v1/models`);
    expect(oa.json.data[0]).toMatchObject({ id: 'tiny-sd1', object: 'model' });
  });

  test('OpenAI image generations: b64_json and url', async () => {
    const b = await post(`${url}/v1/images/generations`, { prompt: 'a fox', size: '64x64', n: 1, model: 'tiny-sd1' });
    expect(b.status).toBe(200);
    expect(typeof b.json.created).toBe('number');
    expect(Buffer.from(b.json.data[0].b64_json, 'base64').subarray(1, 4).toString()).toBe('PNG');
    expect(JSON.parse(b.json.info).sd_model_name).toBe('tiny-sd1');
    const u = await post(`${url}/v1/images/generations`, { prompt: 'a fox', size: '64x64', response_format: 'url' });
    expect(u.json.data[0].url).toMatch(new RegExp(`^${url}/v1/jobs/[0-9a-f-]+/images/0\\.png$`));
    const img = await fetch(u.json.data[0].url);
    expect(img.status).toBe(200);
    const bad = await post(`${url}/v1/images/generations`, { prompt: 'a fox', size: '1024x1024' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'limit_exceeded', limit: 'max-size', param: 'size' });
  });

  test('limits and validation: 4xx JSON errors naming the option or the limit', async () => {
    const cases: Array<[unknown, number, Record<string, unknown>]> = [
      [{ ...small, steps: 51 }, 400, { code: 'limit_exceeded', limit: 'max-steps', param: 'steps' }],
      [{ ...small, width: 512 }, 400, { code: 'limit_exceeded', limit: 'max-size', param: 'width' }],
      [{ ...small, batchCount: 5 }, 400, { code: 'limit_exceeded', limit: 'max-batch', param: 'batchCount' }],
      [{ ...small, widht: 64 }, 400, { code: 'invalid_body' }],
      [{ ...small, width: 65 }, 400, { code: 'invalid_body' }],
      [{ ...small, steps: '3' }, 400, { code: 'invalid_body' }],
      [{ width: 64 }, 400, { code: 'invalid_body' }],
      [{ ...small, model: 'nope' }, 404, { code: 'model_not_found', param: 'model' }],
    ];
    for (const [body, status, err] of cases) {
      const r = await post(`${url}/v1/jobs`, body);
      expect({ body, status: r.status }).toEqual({ body, status });
      expect(r.json.error).toMatchObject(err);
      expect(typeof r.json.error.message).toBe('string');
    }
    const limited = await post(`${url}/v1/jobs`, { ...small, steps: 51 });
    expect(limited.json.error.message).toBe("steps 51 is over this server's maximum of 50 (server limit --max-steps)");
    const notJson = await fetch(`${url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":' });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as any).error.type).toBe('invalid_request_error');
    const big = await post(`${url}/v1/jobs`, { ...small, prompt: 'x'.repeat(1_100_000) });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatchObject({ code: 'limit_exceeded', limit: 'body-limit' });
    expect((await get(`${url}/v1/jobs/nope`)).status).toBe(404);
    expect((await get(`${url}/no/such/route`)).json.error.code).toBe('not_found');
  });

  test('a model name is never a path: traversal and absolute paths are unknown names', async () => {
    for (const model of ['../tiny-sd1', tiny.safetensors, '/etc/passwd', 'tiny-sd1/../../x', '']) {
      const r = await post(`${url}/v1/jobs`, { ...small, model });
      if (model === '') expect(r.status).toBe(202); // the default model
      else expect([model, r.status]).toEqual([model, 404]);
    }
    const r = await post(`${url}/sdapi/v1/txt2img`, { ...small, override_settings: { sd_model_checkpoint: '/etc/passwd' } });
    expect(r.status).toBe(404);
    // A1111 titles ("name [hash]") and file names select the model
    expect((await post(`${url}/v1/jobs`, { ...small, model: 'tiny-sd1 [0123456789]' })).status).toBe(202);
    expect((await post(`${url}/v1/jobs`, { ...small, model: 'tiny-sd1.safetensors' })).status).toBe(202);
  });
});

describe('sdnode serve on the fake engine (cancellation, queue limit, shutdown)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-serve-'));
  fs.writeFileSync(path.join(dir, 'fake.safetensors'), 'x'); // a name to serve; the fake engine never reads it
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fakeOpts = (extra: Partial<ServerOptions> = {}): ServerOptions => {
    return { models: [path.join(dir, 'fake.safetensors')], port: 0, loader: () => loadFakeModel({ stepMs: 50, decodeMs: 5 }), ...extra };
  };

  test('DELETE cancels a running job within a step and a queued one at once; interrupt cancels A1111 jobs', async () => {
    const server = await createServer(fakeOpts());
    try {
      const a = await post(`${server.url}/v1/jobs`, { prompt: 'a', width: 64, height: 64, steps: 150 });
      const b = await post(`${server.url}/v1/jobs`, { prompt: 'b', width: 64, height: 64, steps: 150 });
      expect((await get(`${server.url}/v1/jobs/${b.json.id}`)).json).toMatchObject({ status: 'queued', queuePosition: 0 });
      const events: string[] = [];
      const stream = readEvents(`${server.url}/v1/jobs/${a.json.id}/events`, {}, (t, d) => events.push(t === 'progress' ? `${t}:${d.phase}` : t));
      while (!events.includes('progress:sample')) await new Promise((r) => setTimeout(r, 10));
      const t0 = performance.now();
      const del = await fetch(`${server.url}/v1/jobs/${a.json.id}`, { method: 'DELETE' });
      const ms = performance.now() - t0;
      expect(del.status).toBe(200);
      expect(((await del.json()) as any).status).toBe('cancelled');
      expect(ms).toBeLessThan(1000); // one step is 50 ms
      const all = await stream;
      expect(all[all.length - 1]).toMatchObject({ type: 'error', data: { status: 'cancelled' } });
      const delB = await fetch(`${server.url}/v1/jobs/${b.json.id}`, { method: 'DELETE' });
      expect(((await delB.json()) as any).status).toBe('cancelled');
      const again = await fetch(`${server.url}/v1/jobs/${b.json.id}`, { method: 'DELETE' });
      expect(again.status).toBe(409);
      // A1111: a synchronous txt2img interrupted from another request
      const sync = post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'c', width: 64, height: 64, steps: 150 });
      while ((await get(`${server.url}/sdapi/v1/progress`)).json.state.sampling_step < 2) await new Promise((r) => setTimeout(r, 20));
      const prog = (await get(`${server.url}/sdapi/v1/progress`)).json;
      expect(prog.progress).toBeGreaterThan(0);
      expect(prog.state.sampling_steps).toBe(150);
      expect((await post(`${server.url}/sdapi/v1/interrupt`, {})).status).toBe(200);
      const r = await sync;
      expect(r.status).toBe(409);
      expect(r.json.error.code).toBe('cancelled');
    } finally {
      await server.close(0);
    }
  });

  test('a model file that cannot be loaded fails the job with the loader\'s message; the server stays up', async () => {
    const broken = path.join(dir, 'broken.safetensors');
    fs.writeFileSync(broken, 'this is not a safetensors file');
    const server = await createServer({ models: [broken], port: 0 });
    try {
      const r = await post(`${server.url}/v1/jobs`, { prompt: 'a', width: 64, height: 64, steps: 1 });
      const events = await readEvents(`${server.url}/v1/jobs/${r.json.id}/events`);
      const last = events[events.length - 1];
      expect(last.type).toBe('error');
      expect(last.data.status).toBe('failed');
      expect(last.data.message).toContain('broken.safetensors');
      expect(last.data.message).not.toContain(dir);
      const sync = await post(`${server.url}/sdapi/v1/txt2img`, { prompt: 'a', width: 64, height: 64, steps: 1 });
      expect(sync.status).toBe(500);
      expect(sync.json.error.code).toBe('generation_failed');
      expect((await get(`${server.url}/health`)).json.ok).toBe(true);
    } finally {
      await server.close(0);
    }
  });

  test('a full queue is a 429 naming --max-queue', async () => {
    const server = await createServer(fakeOpts({ limits: { maxQueue: 2 } }));
    try {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await post(`${server.url}/v1/jobs`, { prompt: `${i}`, width: 64, height: 64, steps: 100 })).json.id);
      // one running, two waiting
      const r = await post(`${server.url}/v1/jobs`, { prompt: 'x', width: 64, height: 64, steps: 1 });
      expect(r.status).toBe(429);
      expect(r.json.error).toMatchObject({ code: 'limit_exceeded', limit: 'max-queue' });
    } finally {
      await server.close(0);
    }
  });

  test('graceful shutdown: the running job finishes within the grace time, queued ones are cancelled and named', async () => {
    const server = await createServer(fakeOpts());
    const run = (await post(`${server.url}/v1/jobs`, { prompt: 'a', width: 64, height: 64, steps: 4 })).json.id;
    const queued = (await post(`${server.url}/v1/jobs`, { prompt: 'b', width: 64, height: 64, steps: 4 })).json.id;
    const summary = await server.close(10_000);
    expect(summary.finished).toEqual([run]);
    expect(summary.cancelled).toEqual([queued]);
    expect(server.store.get(run)!.status).toBe('succeeded');
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
  });

  test('shutdown cancels a running job that outlives the grace time', async () => {
    const server = await createServer(fakeOpts());
    const run = (await post(`${server.url}/v1/jobs`, { prompt: 'a', width: 64, height: 64, steps: 1000 })).json.id;
    await new Promise((r) => setTimeout(r, 200));
    const summary = await server.close(100);
    expect(summary.cancelled).toEqual([run]);
  });

  test('API key: required for non-loopback binds; checked on every API route; the page itself is public', async () => {
    await expect(createServer(fakeOpts({ host: '0.0.0.0' }))).rejects.toThrow(/--api-key/);
    const server = await createServer(fakeOpts({ apiKey: 'secret' }));
    try {
      const no = await post(`${server.url}/v1/jobs`, { prompt: 'a', width: 64, height: 64, steps: 1 });
      expect(no.status).toBe(401);
      expect(no.json.error.message).toMatch(/--api-key/);
      expect((await get(`${server.url}/sdapi/v1/sd-models`, { authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await get(`${server.url}/sdapi/v1/sd-models`, { authorization: 'Bearer secret' })).status).toBe(200);
      expect((await get(`${server.url}/sdapi/v1/sd-models`, { 'x-api-key': 'secret' })).status).toBe(200);
      expect((await fetch(`${server.url}/`)).status).toBe(200);
    } finally {
      await server.close(0);
    }
  });
});

describeTiny('LoRA folder', () => {
  test('LoRAs are named, never given as paths; listing shows names only; a bad LoRA file fails the job, not the server', async () => {
    const tiny = tinyModel();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-lora-'));
    try {
      fs.writeFileSync(path.join(dir, 'Style.safetensors'), 'not a safetensors file');
      const bare = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges } });
      try {
        const r = await post(`${bare.url}/v1/jobs`, { ...small, prompt: 'a fox <lora:Style:0.5>' });
        expect(r.status).toBe(400);
        expect(r.json.error.message).toMatch(/--lora-model-dir/);
        expect((await get(`${bare.url}/sdapi/v1/loras`)).json).toEqual([]);
      } finally {
        await bare.close(0);
      }
      const server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges }, adapterDirs: { loraDir: dir } });
      try {
        expect((await get(`${server.url}/sdapi/v1/loras`)).json).toEqual([{ name: 'Style', alias: 'Style', path: null, metadata: {} }]);
        for (const prompt of ['<lora:../x:1>', '<lora:/etc/passwd:1>', '<lora:a/../../b>', '<lora:a\\b>']) {
          const r = await post(`${server.url}/v1/jobs`, { ...small, prompt });
          expect([prompt, r.status, r.json.error.param]).toEqual([prompt, 400, 'prompt']);
        }
        const missing = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, prompt: 'x <lora:nope:1>' });
        expect(missing.status).toBe(404);
        expect(missing.json.error.code).toBe('lora_not_found');
        const bad = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, prompt: 'x <lora:style:0.7>' }); // case-insensitive, like the engine
        expect(bad.status).toBe(500);
        expect(bad.json.error.message).toMatch(/Style\.safetensors/);
        expect(bad.json.error.message).not.toContain(dir); // the engine's message names the file, the server drops its folder
        const ok = await post(`${server.url}/sdapi/v1/txt2img`, small);
        expect(ok.status).toBe(200);
        expect(JSON.stringify(ok.json)).not.toContain(dir); // no server paths in responses
      } finally {
        await server.close(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeTiny('embedding listing and TAESD previews', () => {
  test('GET /sdapi/v1/embeddings lists the embedding folder by name (vectors, width; SDXL clip_l + clip_g), no paths', async () => {
    const tiny = tinyModel();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-emb-'));
    const st = (file: string, tensors: Record<string, number[]>): void => {
      const header: Record<string, unknown> = {};
      let off = 0;
      for (const [name, shape] of Object.entries(tensors)) {
        const n = shape.reduce((a, b) => a * b, 1) * 4;
        header[name] = { dtype: 'F32', shape, data_offsets: [off, off + n] };
        off += n;
      }
      const h = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      fs.writeFileSync(path.join(dir, file), Buffer.concat([len, h, Buffer.alloc(off)]));
    };
    try {
      st('BadHands.safetensors', { emb_params: [2, 32] });
      st('xl-style.safetensors', { clip_g: [3, 1280], clip_l: [3, 768] });
      st('pt-layout.safetensors', { 'string_to_param.*': [1, 1024] });
      st('notemb.safetensors', { a: [1, 2], b: [3, 4] });
      fs.writeFileSync(path.join(dir, 'broken.safetensors'), 'not a safetensors file');
      fs.writeFileSync(path.join(dir, 'old.pt'), 'PK');
      fs.writeFileSync(path.join(dir, 'readme.txt'), 'x');
      const bare = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges } });
      try {
        expect((await get(`${bare.url}/sdapi/v1/embeddings`)).json).toEqual({ loaded: {}, skipped: {} });
      } finally {
        await bare.close(0);
      }
      const server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges }, adapterDirs: { embeddingDir: dir } });
      try {
        const r = await get(`${server.url}/sdapi/v1/embeddings`);
        expect(r.status).toBe(200);
        const item = (vectors: number | null, shape: number | null) => ({ step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape, vectors });
        expect(r.json.loaded).toEqual({ BadHands: item(2, 32), 'xl-style': item(3, 2048), 'pt-layout': item(1, 1024), old: item(null, null) });
        expect(Object.keys(r.json.skipped).sort()).toEqual(['broken', 'notemb']);
        expect(r.json.skipped.notemb.reason).toMatch(/no emb_params/);
        expect(JSON.stringify(r.json)).not.toContain(dir);
        // the folder's embeddings are used by name in prompts (the tiny model's CLIP is 32 wide: BadHands fits)
        const ok = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, prompt: 'a fox, BadHands' });
        expect(ok.status).toBe(200);
        const wrong = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, prompt: 'a fox, xl-style' });
        expect(wrong.status).toBe(400);
        // SD 1.x takes an SDXL file's clip_l (the same CLIP ViT-L), but this one is 768 wide, the tiny model 32
        expect(wrong.json.error.message).toMatch(/xl-style\.safetensors: embedding clip_l \[3, 768\].*does not fit the model/);
        expect(wrong.json.error.message).not.toContain(dir);
      } finally {
        await server.close(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('previewMethod "taesd" in the job API: TAESD previews with --taesd, a 400 naming --taesd without', async () => {
    const tiny = tinyModel();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-taesd-'));
    try {
      const taesd = path.join(dir, 'taesd.safetensors');
      writeTinyTaesd(taesd);
      const bare = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges } });
      try {
        for (const [body, param] of [[{ previewMethod: 'taesd' }, 'previewMethod'], [{ decoder: 'taesd' }, 'decoder']] as const) {
          const r = await post(`${bare.url}/v1/jobs`, { ...small, ...body });
          expect([r.status, r.json.error.param]).toEqual([400, param]);
          expect(r.json.error.message).toMatch(/--taesd FILE/);
        }
        expect((await post(`${bare.url}/v1/jobs`, { ...small, previewMethod: 'vae' })).status).toBe(400);
      } finally {
        await bare.close(0);
      }
      const server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges, taesdPath: taesd } });
      try {
        const previews = async (extra: Record<string, unknown>) => {
          const r = await post(`${server.url}/v1/jobs`, { ...small, steps: 4, previewEvery: 1, ...extra });
          expect(r.status).toBe(202);
          const events = await readEvents(`${server.url}/v1/jobs/${r.json.id}/events`);
          expect(events[events.length - 1].type).toBe('result');
          const sharp = (await import('sharp')).default;
          return Promise.all(
            events.filter((e) => e.type === 'preview').map(async (e) => sharp(Buffer.from(String(e.data.image).split(',')[1], 'base64')).metadata()),
          );
        };
        const latent = await previews({});
        const full = await previews({ previewMethod: 'taesd' });
        expect(latent.length).toBeGreaterThan(0);
        expect(full.length).toBeGreaterThan(0);
        // latent previews are 1/8 of the image (8x8 here), TAESD ones full size (64x64)
        expect(latent.every((m) => m.width === 8 && m.height === 8)).toBe(true);
        expect(full.every((m) => m.width === 64 && m.height === 64)).toBe(true);
      } finally {
        await server.close(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeTiny('ControlNet over HTTP', () => {
  test('job API controlNet and A1111 alwayson_scripts.controlnet give the library\'s pixels; names, never paths; no preprocessors', async () => {
    const tiny = tinyModel();
    const base = { ...small, sampler: 'euler_a' as const, cfgScale: 7 };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-cn-'));
    try {
      const file = path.join(dir, 'Edges-Tiny.safetensors');
      writeTinyControlNet(file);
      const sharp = (await import('sharp')).default;
      const control = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 0, g: 0, b: 0 } } })
        .composite([{ input: await sharp({ create: { width: 24, height: 40, channels: 3, background: { r: 255, g: 255, b: 255 } } }).png().toBuffer(), left: 20, top: 12 }])
        .png()
        .toBuffer();
      const b64 = control.toString('base64');
      const bare = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges } });
      try {
        const r = await post(`${bare.url}/v1/jobs`, { ...small, controlNet: { model: 'edges-tiny', image: b64 } });
        expect([r.status, r.json.error.param]).toEqual([400, 'controlNet.model']);
        expect(r.json.error.message).toMatch(/--control-net-dir/);
        expect((await get(`${bare.url}/controlnet/model_list`)).json).toEqual({ model_list: [] });
      } finally {
        await bare.close(0);
      }
      const model = await loadModel(tiny.safetensors, { tokenizerPath: tiny.merges });
      let direct: Buffer;
      let plain: Buffer;
      try {
        direct = (await model.generate({ ...base, controlNet: { model: file, image: control, strength: 0.8 } })).images[0].data;
        plain = (await model.generate(base)).images[0].data;
      } finally {
        await model.dispose();
      }
      expect(direct.equals(plain)).toBe(false); // the ControlNet acts
      const server = await createServer({ models: [tiny.safetensors], port: 0, load: { tokenizerPath: tiny.merges }, adapterDirs: { controlNetDir: dir } });
      try {
        expect((await get(`${server.url}/controlnet/model_list`)).json).toEqual({ model_list: ['Edges-Tiny'] });
        expect((await get(`${server.url}/controlnet/module_list`)).json).toEqual({ module_list: ['none'] });
        // job API
        const j = await post(`${server.url}/v1/jobs`, { ...base, controlNet: { model: 'edges-tiny', image: `data:image/png;base64,${b64}`, strength: 0.8 } });
        expect(j.status).toBe(202);
        const events = await readEvents(`${server.url}/v1/jobs/${j.json.id}/events`);
        const result = events[events.length - 1].data;
        expect(result.status).toBe('succeeded');
        expect(result.parameters.controlNet).toEqual({ model: 'edges-tiny', strength: 0.8, start: 0, end: 1 });
        expect(JSON.stringify(result)).not.toContain(dir);
        const png = Buffer.from(await (await fetch(`${server.url}${result.images[0].url}`)).arrayBuffer());
        expect((await sharp(png).raw().toBuffer()).equals(direct)).toBe(true);
        expect(readText(png).parameters).toMatch(/ControlNet 0: "Module: none, Model: Edges-Tiny/);
        // A1111 (sd-webui-controlnet's request shape)
        const unit = { enabled: true, module: 'none', model: 'Edges-Tiny [0123abcd]', image: b64, weight: 0.8, guidance_start: 0, guidance_end: 1 };
        const a = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, sampler_name: 'Euler a', cfg_scale: 7, alwayson_scripts: { controlnet: { args: [unit, { enabled: false, model: 'None' }] } } });
        expect(a.status).toBe(200);
        expect((await sharp(Buffer.from(a.json.images[0], 'base64')).raw().toBuffer()).equals(direct)).toBe(true);
        // errors: a preprocessor, an unknown name, a path, a bad image, two units, out-of-range settings
        const bad = async (body: Record<string, unknown>, a1111 = false) => {
          const res = await post(`${server.url}${a1111 ? '/sdapi/v1/txt2img' : '/v1/jobs'}`, { ...small, ...body });
          return [res.status, res.json.error?.param, res.json.error?.message ?? ''];
        };
        const cn = (u: Record<string, unknown>) => ({ alwayson_scripts: { controlnet: { args: [{ ...unit, ...u }] } } });
        expect((await bad(cn({ module: 'canny' }), true)).slice(0, 2)).toEqual([400, 'alwayson_scripts.controlnet.args[0].module']);
        expect((await bad(cn({ model: 'nope' }), true)).slice(0, 2)).toEqual([404, 'alwayson_scripts.controlnet.args[0].model']);
        expect((await bad(cn({ image: 'bm90IGFuIGltYWdl' }), true)).slice(0, 2)).toEqual([400, 'alwayson_scripts.controlnet.args[0].image']);
        expect((await bad(cn({ weight: 11 }), true)).slice(0, 2)).toEqual([400, 'alwayson_scripts.controlnet.args[0].weight']);
        expect((await bad({ alwayson_scripts: { controlnet: { args: [unit, unit] } } }, true))[0]).toBe(400);
        for (const m of ['../Edges-Tiny', file, 'a/b', 'a\\b']) expect((await bad({ controlNet: { model: m, image: b64 } })).slice(0, 2)).toEqual([400, 'controlNet.model']);
        const missing = await bad({ controlNet: { model: 'nope', image: b64 } });
        expect(missing.slice(0, 2)).toEqual([404, 'controlNet.model']);
        expect(missing[2]).toMatch(/this server has: Edges-Tiny/);
        expect((await bad({ controlNet: { model: 'edges-tiny', image: b64, start: 2 } }))[0]).toBe(400);
        expect((await bad({ controlNet: { model: 'edges-tiny' } }))[0]).toBe(400);
        const ok = await post(`${server.url}/sdapi/v1/txt2img`, { ...small, sampler_name: 'Euler a', cfg_scale: 7 });
        expect((await sharp(Buffer.from(ok.json.images[0], 'base64')).raw().toBuffer()).equals(plain)).toBe(true); // no unit: no ControlNet
      } finally {
        await server.close(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeTiny('model pool', () => {
  test('models load on first use and the least recently used one is unloaded to stay within the memory budget', async () => {
    const tiny = tinyModel();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdnode-pool-'));
    try {
      for (const n of ['a', 'b']) fs.symlinkSync(tiny.safetensors, path.join(dir, `${n}.safetensors`));
      const size = fs.statSync(tiny.safetensors).size;
      const log: string[] = [];
      const server = await createServer({ modelDirs: [dir], port: 0, load: { tokenizerPath: tiny.merges }, memoryBudgetBytes: Math.floor(size * 1.5), log: (l) => log.push(l) });
      try {
        expect((await get(`${server.url}/v1/models`)).json.data.map((m: { id: string }) => m.id)).toEqual(['a', 'b']);
        expect(log.filter((l) => l.startsWith('loading'))).toEqual([]);
        for (const model of ['a', 'b', 'a']) expect((await post(`${server.url}/sdapi/v1/txt2img`, { ...small, override_settings: { sd_model_checkpoint: model } })).status).toBe(200);
        expect(log.filter((l) => /^(loading|unloading)/.test(l)).map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual([
          'loading model a',
          'unloading model a',
          'loading model b',
          'unloading model b',
          'loading model a',
        ]);
      } finally {
        await server.close(0);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sdnode serve / worker command lines', () => {
  const cli = cliPath;
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  beforeAll(() => {
    ensureDist();
  });

  test('refuses a network bind without --api-key, a missing model, a missing or unreachable queue, an unknown device', () => {
    const model = path.join(repoRoot, 'package.json'); // exists; never loaded before the bind check
    let r = run(['serve', '--model', model, '--host', '0.0.0.0', '--port', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--api-key/);
    r = run(['serve', '--model', '/no/such/model.safetensors', '--port', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/does not exist \(--model\)/);
    r = run(['serve', '--port', '0']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--model FILE/);
    r = run(['worker', '--model', model]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/missing required option --queue/);
    r = run(['worker', '--queue', 'redis://127.0.0.1:1', '--model', model, '--device', 'cuda']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^sdnode worker: invalid option: expected .* for --device but received "cuda"/);
    r = run(['serve', '--queue', 'redis://127.0.0.1:1', '--port', '0']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^sdnode serve: SdnodeError: cannot connect to Redis at redis:\/\/127\.0\.0\.1:1 \(--queue\): .*ECONNREFUSED/);
    r = run(['worker', '--queue', 'localhost:6379', '--model', model]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/invalid option: expected a redis:\/\/HOST\[:PORT\]\[\/DB\] or rediss:\/\/ URL for --queue/);
    expect(run(['serve', '--help']).stdout).toMatch(/--model FILE .*repeatable/);
  });
});
