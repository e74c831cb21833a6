// sdnode in an Electron utilityProcess (or any Node child process): the main process sends
// { id, type: 'generate', model, options, output } and gets { id, type: 'progress' | 'done' | 'error', ... } back.
// Models stay loaded between requests; the engine runs on its own threads, so this process stays responsive.
//
// Electron main process:   const child = utilityProcess.fork(path.join(__dirname, 'sd-worker.js'));
// Plain Node (the tests):  const child = child_process.fork(require.resolve('./sd-worker.js'));
'use strict';
const { loadModel } = require(process.env.SDNODE_MODULE || 'sdnode');

// Electron's utilityProcess talks through process.parentPort (messages arrive as { data }); a Node child process
// through process.send / process.on('message').
const port = process.parentPort
  ? { on: (fn) => process.parentPort.on('message', (e) => fn(e.data)), send: (m) => process.parentPort.postMessage(m) }
  : { on: (fn) => process.on('message', fn), send: (m) => process.send(m) };

const models = new Map(); // path -> Promise<Model>
const running = new Map(); // request id -> AbortController

function model(file) {
  if (!models.has(file)) {
    const p = loadModel(file);
    p.catch(() => models.delete(file)); // a failed load is retried on the next request
    models.set(file, p);
  }
  return models.get(file);
}

async function generate(msg) {
  const ac = new AbortController();
  running.set(msg.id, ac);
  try {
    const m = await model(msg.model);
    const r = await m.generate(msg.options, {
      signal: ac.signal,
      onProgress: (p) => port.send({ id: msg.id, type: 'progress', phase: p.phase, step: p.step, steps: p.steps, image: p.image }),
    });
    const files = [];
    for (let i = 0; i < r.images.length; i++) {
      const file = r.images.length === 1 ? msg.output : msg.output.replace(/(\.\w+)$/, `-${i}$1`);
      await r.images[i].save(file);
      files.push({ file, seed: r.images[i].seed });
    }
    port.send({ id: msg.id, type: 'done', files, elapsedMs: r.elapsedMs });
  } catch (err) {
    // SdnodeError subclasses keep their name and stable code across the process boundary
    port.send({ id: msg.id, type: 'error', name: err.name, code: err.code, message: err.message });
  } finally {
    running.delete(msg.id);
  }
}

port.on((msg) => {
  if (msg.type === 'generate') generate(msg);
  else if (msg.type === 'cancel') running.get(msg.id)?.abort();
  else if (msg.type === 'quit') {
    Promise.all([...models.values()].map((p) => p.then((m) => m.dispose(), () => {}))).then(() => process.exit(0));
  }
});
port.send({ type: 'ready' });
