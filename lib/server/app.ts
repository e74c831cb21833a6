/**
 * The HTTP service behind `sdnode serve`: our job API with Server-Sent Events, A1111's /sdapi/v1 and OpenAI's
 * image generations, and the web page, on Fastify with JSON-schema validated bodies.
 * @packageDocumentation
 */
import { timingSafeEqual, createHash } from 'crypto';
import * as os from 'os';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GENERATE_DEFAULTS } from '../options';
import { a1111Info, isFinal, JobStore, publicStatus, type JobEvent, type JobRecord } from './jobs';
import { DEFAULT_LIMITS, errorBody, HttpError, limitError, type ServerLimits } from './limits';
import { LocalBackend, type Backend, type ShutdownSummary } from './local';
import { controlNetFile, controlNetNames, discoverModels, embeddingEntries, loraNames, ModelPool, type AdapterDirs, type ModelEntry, type PoolLoadOptions } from './models';
import { A1111_IMG2IMG_SCHEMA, A1111_SAMPLERS, A1111_SCHEDULERS, A1111_TXT2IMG_SCHEMA, checkImages, fromA1111Body, fromJobBody, fromOpenAIBody, JOB_SCHEMA, OPENAI_SCHEMA, type JobRequest } from './params';
import { PAGE_HTML } from './page';
import type { Model } from '../model';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Model files or diffusers folders (local mode: at least one of models/modelDirs). */
  models?: string[];
  /** Folders whose model files are served. */
  modelDirs?: string[];
  /** Host to bind. Default 127.0.0.1. */
  host?: string;
  /** Port (0: any free port). Default 7860. */
  port?: number;
  /** Required (Authorization: Bearer KEY or X-API-Key: KEY) when set; mandatory for non-loopback hosts. */
  apiKey?: string;
  /** Limits; defaults in {@link DEFAULT_LIMITS}. */
  limits?: Partial<ServerLimits>;
  /** How long finished jobs and their images stay retrievable (ms). Default 600000. */
  resultTtlMs?: number;
  /** Memory budget for loaded models (bytes). Default: half the machine's RAM. */
  memoryBudgetBytes?: number;
  /** Load options for every model. */
  load?: PoolLoadOptions;
  /** LoRA folder (`<lora:NAME:W>` prompt tags) and embedding folder for every generation (local mode). */
  adapterDirs?: AdapterDirs;
  /** Redis URL: queue mode (jobs go to BullMQ for `sdnode worker` processes). */
  queue?: string;
  /** Queue mode: attempts per job for retryable failures. Default 3. */
  attempts?: number;
  /** Log lines (start, model loads, shutdown). */
  log?: (line: string) => void;
  /** @internal tests: a model loader instead of loadModel. */
  loader?: (entry: ModelEntry) => Promise<Model>;
}

/** A started server. */
export interface SdnodeServer {
  /** Base URL, e.g. http://127.0.0.1:7860 */
  url: string;
  app: FastifyInstance;
  store: JobStore;
  backend: Backend;
  /** Stops taking jobs, lets running ones finish for `graceMs` (then cancels them), and closes. */
  close(graceMs?: number): Promise<ShutdownSummary>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Whether a bind address is loopback-only. */
export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\./.test(host);
}

function keyMatches(given: string, key: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(key).digest();
  return timingSafeEqual(a, b);
}

/** Creates and starts the server. Throws a plain Error for a configuration problem (bad host/key/models). */
export async function createServer(opts: ServerOptions): Promise<SdnodeServer> {
  const host = opts.host ?? '127.0.0.1';
  const apiKey = opts.apiKey || undefined;
  if (!isLoopback(host) && !apiKey) {
    throw new Error(`binding to ${host} exposes the server to the network: set an API key with --api-key KEY (or SDNODE_API_KEY)`);
  }
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const ttlMs = opts.resultTtlMs ?? 600_000;
  const log = opts.log ?? (() => {});
  const store = new JobStore(ttlMs);

  let pool: ModelPool | undefined;
  let backend: Backend;
  let redis: import('./redis').RedisBackend | undefined;
  if (opts.queue) {
    if ((opts.models?.length ?? 0) + (opts.modelDirs?.length ?? 0) > 0 || opts.adapterDirs?.loraDir || opts.adapterDirs?.embeddingDir || opts.adapterDirs?.controlNetDir) {
      throw new Error('with --queue the server runs no models itself: give --model/--model-dir/--lora-model-dir/--embd-dir to each `sdnode worker` instead');
    }
    const { RedisBackend } = await import('./redis');
    redis = await RedisBackend.open(opts.queue, store, { resultTtlMs: ttlMs, attempts: opts.attempts ?? 3 });
    backend = redis;
  } else {
    const entries = discoverModels(opts.models ?? [], opts.modelDirs ?? []);
    pool = new ModelPool(entries, { budgetBytes: opts.memoryBudgetBytes ?? Math.floor(os.totalmem() / 2), load: opts.load, loader: opts.loader, log, adapterDirs: opts.adapterDirs });
    backend = new LocalBackend(store, pool, limits.maxConcurrent);
  }

  const { default: Fastify } = await import('fastify');
  const app = Fastify({
    bodyLimit: limits.bodyLimit,
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
  });
  let closing = false;
  const streams = new Set<FastifyReply>();

  app.setErrorHandler((err: unknown, _req, reply) => {
    if (err instanceof HttpError) return reply.status(err.status).send(errorBody(err));
    const e = err as { validation?: unknown; code?: string; statusCode?: number; message?: string; validationContext?: string };
    if (e.validation) {
      return reply.status(400).send(errorBody(new HttpError(400, 'invalid_body', `invalid request: ${e.message ?? 'bad body'}`)));
    }
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.status(413).send(errorBody(limitError('bodyLimit', `the request body is larger than ${limits.bodyLimit} bytes`, undefined, 413)));
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.status(e.statusCode).send(errorBody(new HttpError(e.statusCode, e.code ?? 'bad_request', e.message ?? 'bad request')));
    }
    log(`internal error: ${e.message ?? String(err)}`);
    return reply.status(500).send(errorBody(new HttpError(500, 'internal', 'internal server error')));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send(errorBody(new HttpError(404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`)));
  });

  app.addHook('onRequest', async (req) => {
    if (!apiKey) return;
    const p = req.url.split('?')[0];
    if (req.method === 'GET' && (p === '/' || p === '/favicon.ico')) return; // the page asks for the key itself
    const auth = req.headers.authorization;
    const given = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : req.headers['x-api-key'];
    if (typeof given !== 'string' || !keyMatches(given, apiKey)) {
      throw new HttpError(401, 'unauthorized', 'missing or wrong API key: send "Authorization: Bearer KEY" or "X-API-Key: KEY" (the key given to sdnode serve --api-key)');
    }
  });

  // ---- jobs ------------------------------------------------------------------------------------------------

  async function modelNameFor(name: string): Promise<string> {
    if (pool) return pool.resolve(name).name;
    if (name === '') return '';
    const { workers, models } = await redis!.workerModels().catch((err: unknown) => {
      throw new HttpError(503, 'queue_unavailable', `the job queue cannot be reached (${String((err as Error)?.message ?? err)}); retry later`);
    });
    const n = name.replace(/\s*\[[0-9a-f]{8,64}\]$/i, '');
    const m = models.find((x) => x.name === n || x.filename === n);
    if (m) return m.name;
    if (workers === 0) return n; // no worker is up: the job waits for one that serves it
    throw new HttpError(404, 'model_not_found', `unknown model ${JSON.stringify(name)}; the workers serve: ${models.map((x) => x.name).join(', ')}`, { param: 'model' });
  }

  async function submit(req: JobRequest): Promise<JobRecord> {
    if (closing) throw new HttpError(503, 'shutting_down', 'the server is shutting down and takes no new jobs');
    await checkImages(
      req,
      req.api === 'a1111' ? { init: 'init_images', mask: 'mask', control: 'alwayson_scripts.controlnet.args[0].image' } : { init: 'initImage', mask: 'mask', control: 'controlNet.image' },
    );
    if (pool && req.control) {
      const param = req.api === 'a1111' ? 'alwayson_scripts.controlnet.args[0].model' : 'controlNet.model';
      if (!pool.adapterDirs.controlNetDir) {
        throw new HttpError(400, 'invalid_value', 'the request names a ControlNet but this server has no ControlNet folder (start it with --control-net-dir DIR)', { param });
      }
      if (!controlNetFile(pool.adapterDirs.controlNetDir, req.control.model)) {
        throw new HttpError(404, 'controlnet_not_found', `unknown ControlNet ${JSON.stringify(req.control.model)}; this server has: ${controlNetNames(pool.adapterDirs.controlNetDir).join(', ') || 'none'} (GET /controlnet/model_list)`, { param });
      }
    }
    const unavailable = (err: unknown): HttpError =>
      new HttpError(503, 'queue_unavailable', `the job queue cannot be reached (${String((err as Error)?.message ?? err)}); retry later`);
    const tags = [...(req.options.prompt + req.options.negativePrompt).matchAll(/<lora:([^>:]*)/g)].map((m) => m[1].trim());
    if (pool && tags.length > 0) {
      if (!pool.adapterDirs.loraDir) {
        throw new HttpError(400, 'invalid_value', 'the prompt names a LoRA (<lora:...>) but this server has no LoRA folder (start it with --lora-model-dir DIR)', { param: 'prompt' });
      }
      const have = loraNames(pool.adapterDirs.loraDir).map((x) => x.toLowerCase());
      const missing = tags.filter((t) => !have.includes(t.toLowerCase()));
      if (missing.length > 0) {
        throw new HttpError(404, 'lora_not_found', `unknown LoRA ${missing.map((x) => JSON.stringify(x)).join(', ')}; this server has: ${loraNames(pool.adapterDirs.loraDir).join(', ') || 'none'} (GET /sdapi/v1/loras)`, { param: 'prompt' });
      }
    }
    if (pool && !pool.taesd) {
      const which = req.options.decoder === 'taesd' ? 'decoder' : req.previewMethod === 'taesd' ? 'previewMethod' : undefined;
      if (which) {
        throw new HttpError(400, 'invalid_value', `${which} "taesd" needs the server started with --taesd FILE (a TAESD/TAESDXL decoder for the models)`, { param: which });
      }
    }
    const model = await modelNameFor(req.model);
    const waiting = await backend.queued().catch((err: unknown) => {
      throw unavailable(err);
    });
    if (waiting >= limits.maxQueue) {
      throw limitError('maxQueue', `the queue is full (${waiting} jobs waiting); retry later`, undefined, 429);
    }
    const job = store.create(req, model);
    try {
      await backend.submit(job);
    } catch (err) {
      store.finish(job, 'failed', { error: { message: String((err as Error)?.message ?? err), code: 'Internal' } });
      throw unavailable(err);
    }
    return job;
  }

  async function getJob(id: string): Promise<JobRecord> {
    const job = store.get(id) ?? (/^[A-Za-z0-9-]{1,100}$/.test(id) ? await backend.find(id) : undefined);
    if (!job) throw new HttpError(404, 'job_not_found', `no job ${JSON.stringify(id)} (finished jobs are kept for ${Math.round(ttlMs / 1000)} s)`);
    return job;
  }

  const withTtl = (job: JobRecord): Record<string, unknown> => publicStatus(job, ttlMs);

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(PAGE_HTML));

  app.get('/health', async () => ({ ok: !closing, mode: backend.mode, queued: await backend.queued(), jobs: store.all().filter((j) => !isFinal(j.status)).length }));

  app.post('/v1/jobs', { schema: { body: JOB_SCHEMA } }, async (req, reply) => {
    const job = await submit(fromJobBody(req.body as Record<string, unknown>, limits));
    return reply.status(202).send({ ...withTtl(job), links: { self: `/v1/jobs/${job.id}`, events: `/v1/jobs/${job.id}/events` } });
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    const job = await getJob(req.params.id);
    const out = withTtl(job);
    if (job.status === 'queued' && backend instanceof LocalBackend) out.queuePosition = backend.position(job);
    return out;
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    const job = await getJob(req.params.id);
    if (isFinal(job.status)) throw new HttpError(409, 'job_finished', `job ${job.id} has already ${job.status === 'succeeded' ? 'succeeded' : job.status}`);
    await backend.cancel(job, 'cancelled by the client (DELETE /v1/jobs/:id)');
    return withTtl(job);
  });

  app.get<{ Params: { id: string; n: string } }>('/v1/jobs/:id/images/:n', async (req, reply) => {
    const job = await getJob(req.params.id);
    const m = /^(\d+)\.png$/.exec(req.params.n);
    const img = m ? job.result?.images[Number(m[1])] : undefined;
    if (!img) throw new HttpError(404, 'image_not_found', `job ${job.id} has no image ${JSON.stringify(req.params.n)} (status ${job.status})`);
    return reply.type('image/png').header('cache-control', 'private, max-age=600').send(img.png);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', async (req, reply) => {
    const job = await getJob(req.params.id);
    reply.hijack();
    const res = reply.raw;
    res.on('error', () => {}); // a client that went away; 'close' cleans up
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (e: JobEvent): void => {
      res.write(`event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
    };
    send({ type: 'status', data: withTtl(job) });
    if (isFinal(job.status)) {
      if (job.status === 'succeeded') send({ type: 'result', data: withTtl(job) });
      else send({ type: 'error', data: { status: job.status, message: job.error?.message ?? job.status, code: job.error?.code ?? job.status } });
      res.end();
      return;
    }
    if (job.progress) send({ type: 'progress', data: job.progress });
    if (job.preview) send({ type: 'preview', data: { step: job.preview.step, image: `data:${job.preview.mime};base64,${job.preview.data.toString('base64')}` } });
    streams.add(reply);
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const listener = (e: JobEvent): void => {
      send(e.type === 'result' ? { type: 'result', data: withTtl(job) } : e);
      if (e.type === 'result' || e.type === 'error') end();
    };
    const end = (): void => {
      clearInterval(heartbeat);
      job.listeners.delete(listener);
      streams.delete(reply);
      res.end();
    };
    job.listeners.add(listener);
    res.on('close', end);
  });

  app.get('/v1/models', async () => {
    const list = await modelList();
    return { object: 'list', data: list.map((m) => ({ id: m.name, object: 'model', created: 0, owned_by: 'sdnode', filename: m.filename })) };
  });

  async function modelList(): Promise<Array<Omit<ModelEntry, 'file'>>> {
    if (pool) return pool.entries.map(({ name, filename, sizeBytes }) => ({ name, filename, sizeBytes }));
    return (await redis!.workerModels()).models;
  }

  /** Waits for a synchronous API's job; a client that disconnects cancels it. */
  async function waitFor(job: JobRecord, req: FastifyRequest): Promise<void> {
    const onClose = (): void => {
      if (!isFinal(job.status)) void backend.cancel(job, 'the client disconnected');
    };
    req.raw.socket?.on('close', onClose);
    try {
      await job.done;
    } finally {
      req.raw.socket?.off('close', onClose);
    }
    if (job.status === 'cancelled') throw new HttpError(409, 'cancelled', `the job was cancelled: ${job.error?.message ?? ''}`);
    if (job.status === 'failed') {
      const bad = job.error?.code === 'InvalidArgument';
      throw new HttpError(bad ? 400 : 500, bad ? 'invalid_value' : 'generation_failed', `generation failed: ${job.error?.message ?? 'unknown error'}`);
    }
  }

  // ---- A1111 -----------------------------------------------------------------------------------------------

  app.post('/sdapi/v1/txt2img', { schema: { body: A1111_TXT2IMG_SCHEMA } }, async (req) => {
    const body = req.body as Record<string, unknown>;
    const job = await submit(fromA1111Body(body, limits));
    await waitFor(job, req);
    const r = job.result!;
    return { images: r.images.map((i) => i.png.toString('base64')), parameters: body, info: JSON.stringify(a1111Info(r)) };
  });

  app.get<{ Querystring: { skip_current_image?: string } }>('/sdapi/v1/progress', async (req) => {
    const active = store.all().filter((j) => !isFinal(j.status));
    const running = active.filter((j) => j.status === 'running');
    const job = running.find((j) => j.request.api === 'a1111') ?? running[0];
    const p = job?.progress;
    const skipImage = req.query.skip_current_image === 'true';
    return {
      progress: p ? p.fraction : 0,
      eta_relative: p?.etaMs != null ? p.etaMs / 1000 : 0,
      state: {
        skipped: false,
        interrupted: false,
        job: job ? job.id : '',
        job_count: active.length,
        job_timestamp: job ? new Date(job.createdAt).toISOString().replace(/\D/g, '').slice(0, 14) : '0',
        job_no: 0,
        sampling_step: p?.phase === 'sample' ? p.step : 0,
        sampling_steps: p?.phase === 'sample' ? p.steps : job?.request.options.steps ?? 0,
      },
      current_image: !skipImage && job?.preview ? job.preview.data.toString('base64') : null,
      textinfo: job ? `${p?.phase ?? 'queued'} ${p ? `${p.step}/${p.steps}` : ''}`.trim() : null,
    };
  });

  app.post('/sdapi/v1/interrupt', async () => {
    const running = store.all().filter((j) => j.status === 'running');
    const targets = running.filter((j) => j.request.api === 'a1111');
    await Promise.all((targets.length ? targets : running).map((j) => backend.cancel(j, 'interrupted (POST /sdapi/v1/interrupt)')));
    return {};
  });

  app.post('/sdapi/v1/skip', async () => ({}));

  app.get('/sdapi/v1/sd-models', async () =>
    (await modelList()).map((m) => ({ title: m.name, model_name: m.name, hash: null, sha256: null, filename: m.filename, config: null })),
  );

  app.get('/sdapi/v1/loras', async () => {
    const names = pool ? loraNames(pool.adapterDirs.loraDir) : (await redis!.workerModels()).loras;
    return names.map((name) => ({ name, alias: name, path: null, metadata: {} })); // no server paths
  });

  // the sd-webui-controlnet extension's listing routes (names only, no paths; no preprocessors here)
  app.get('/controlnet/model_list', async () => ({ model_list: pool ? controlNetNames(pool.adapterDirs.controlNetDir) : (await redis!.workerModels()).controlnets }));
  app.get('/controlnet/module_list', async () => ({ module_list: ['none'] }));

  app.get('/sdapi/v1/embeddings', async () => {
    // A1111's shape: {loaded: {NAME: {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}}, skipped: {...}}. The
    // listing is the folder's (not filtered by the current model's family, which A1111 does); no server paths.
    const e = pool ? await embeddingEntries(pool.adapterDirs.embeddingDir) : (await redis!.workerModels()).embeddings;
    const item = (x: { vectors: number | null; shape: number | null }): Record<string, unknown> => ({ step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: x.shape, vectors: x.vectors });
    return {
      loaded: Object.fromEntries(e.loaded.map((x) => [x.name, item(x)])),
      skipped: Object.fromEntries(e.skipped.map((x) => [x.name, { ...item({ vectors: null, shape: null }), reason: x.reason }])),
    };
  });

  app.get('/sdapi/v1/samplers', async () => A1111_SAMPLERS.map((s) => ({ name: s.name, aliases: s.aliases, options: {} })));

  app.get('/sdapi/v1/schedulers', async () =>
    A1111_SCHEDULERS.map((s) => ({ name: s.name, label: s.label, aliases: s.aliases.length ? s.aliases : null, default_rho: -1, need_inner_model: false })),
  );

  app.get('/sdapi/v1/options', async () => {
    const list = await modelList();
    return { sd_model_checkpoint: pool ? pool.defaultName : list[0]?.name ?? '', CLIP_stop_at_last_layers: GENERATE_DEFAULTS.clipSkip, samples_format: 'png' };
  });

  app.post('/sdapi/v1/img2img', { schema: { body: A1111_IMG2IMG_SCHEMA } }, async (req) => {
    const body = req.body as Record<string, unknown>;
    const job = await submit(fromA1111Body(body, limits, true));
    await waitFor(job, req);
    const r = job.result!;
    const { init_images: _i, mask: _m, ...parameters } = body; // A1111 echoes the request; the images are not worth sending back
    return { images: r.images.map((i) => i.png.toString('base64')), parameters, info: JSON.stringify(a1111Info(r)) };
  });

  // ---- OpenAI ----------------------------------------------------------------------------------------------

  app.post('/v1/images/generations', { schema: { body: OPENAI_SCHEMA } }, async (req) => {
    const body = req.body as Record<string, unknown>;
    const job = await submit(fromOpenAIBody(body, limits));
    await waitFor(job, req);
    const r = job.result!;
    const format = body.response_format === 'url' ? 'url' : 'b64_json';
    const base = `${req.protocol}://${req.headers.host ?? `${host}:${port}`}`;
    return {
      created: Math.floor((job.finishedAt ?? Date.now()) / 1000),
      data: r.images.map((img, i) => (format === 'url' ? { url: `${base}/v1/jobs/${job.id}/images/${i}.png` } : { b64_json: img.png.toString('base64') })),
      // Not part of OpenAI's schema: A1111's parameters/info, so the seeds and settings are not lost.
      parameters: r.parameters,
      info: JSON.stringify(a1111Info(r)),
    };
  });

  // ---- start -----------------------------------------------------------------------------------------------

  const port = opts.port ?? 7860;
  try {
    await app.listen({ host, port });
  } catch (err) {
    await backend.close(0).catch(() => {});
    await pool?.close();
    store.close();
    const code = (err as { code?: string }).code;
    if (code === 'EADDRINUSE') throw new Error(`port ${port} on ${host} is already in use: choose another with --port`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new Error(`cannot bind to ${host}: not an address of this machine (--host)`);
    throw err;
  }
  const addr = app.server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const url = `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${boundPort}`;
  log(`sdnode serve: listening on ${url} (${backend.mode === 'redis' ? `queue ${opts.queue}` : `models: ${pool!.entries.map((m) => m.name).join(', ')}`})`);

  let closed: Promise<ShutdownSummary> | undefined;
  return {
    url,
    app,
    store,
    backend,
    close(graceMs = 30_000) {
      if (!closed) {
        closed = (async () => {
          closing = true;
          const summary = await backend.close(graceMs);
          for (const s of streams) s.raw.end();
          await app.close();
          store.close();
          await pool?.close();
          return summary;
        })();
      }
      return closed;
    },
  };
}
