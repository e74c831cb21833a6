// Electron main process: runs sdnode in a utilityProcess (sd-worker.js) so that a crash in native code can never take
// down the UI, and forwards progress to the renderer. Not run by the tests (Electron cannot be downloaded on the
// CI machine); sd-worker.js itself is tested under plain Node with child_process.fork (test/electron.test.ts).
'use strict';
const path = require('path');
const { app, BrowserWindow, ipcMain, utilityProcess } = require('electron');

let worker;
let nextId = 1;
const pending = new Map();

function startWorker() {
  worker = utilityProcess.fork(path.join(__dirname, 'sd-worker.js'), [], { serviceName: 'sdnode' });
  worker.on('message', (msg) => {
    const p = pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') p.sender.send('sd:progress', msg);
    else {
      pending.delete(msg.id);
      if (msg.type === 'done') p.resolve(msg);
      else p.reject(Object.assign(new Error(msg.message), { name: msg.name, code: msg.code }));
    }
  });
  worker.on('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`the sdnode worker exited (code ${code})`));
    pending.clear();
    worker = undefined;
  });
}

ipcMain.handle('sd:generate', (event, { model, options, output }) => {
  if (!worker) startWorker();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, sender: event.sender });
    worker.postMessage({ id, type: 'generate', model, options, output });
  });
});

app.whenReady().then(() => {
  const win = new BrowserWindow({ webPreferences: { preload: path.join(__dirname, 'preload.js') } });
  win.loadFile('index.html');
});
app.on('before-quit', () => worker?.postMessage({ type: 'quit' }));
