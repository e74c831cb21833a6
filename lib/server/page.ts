/**
 * The web page served at `/`: prompt, settings, live progress and preview, result, cancel. Plain HTML and script
 * (no build step, nothing loaded from elsewhere); it talks to the job API and reads the SSE stream with fetch, so
 * the API key (if the server has one) travels in a header, never in a URL.
 * @internal
 * @packageDocumentation
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sdnode</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 980px; padding: 16px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 12px; }
  form { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px 12px; }
  label { display: flex; flex-direction: column; font-size: 13px; color: #555; }
  textarea { grid-column: span 4; min-height: 56px; font: inherit; }
  .wide { grid-column: span 4; }
  input, select { font: inherit; padding: 3px; }
  .row { display: flex; gap: 8px; align-items: center; grid-column: span 4; }
  progress { flex: 1; height: 16px; }
  #out { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 12px; }
  #out img, #preview { max-width: 100%; image-rendering: auto; border: 1px solid #ddd; }
  #preview { width: 256px; }
  #status { font-size: 13px; color: #555; min-height: 1.4em; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>sdnode</h1>
<form id="form">
  <label class="wide">Prompt<textarea id="prompt" name="prompt" required>a red fox in the snow</textarea></label>
  <label class="wide">Negative prompt<input id="negativePrompt" name="negativePrompt"></label>
  <label>Model<select id="model" name="model"></select></label>
  <label>Width<input id="width" name="width" type="number" min="64" max="2048" step="8" value="512"></label>
  <label>Height<input id="height" name="height" type="number" min="64" max="2048" step="8" value="512"></label>
  <label>Steps<input id="steps" name="steps" type="number" min="1" max="1000" value="20"></label>
  <label>CFG scale<input id="cfgScale" name="cfgScale" type="number" min="0" max="100" step="0.5" value="7"></label>
  <label>Sampler<select id="sampler" name="sampler">
    <option>euler_a</option><option>euler</option><option>heun</option><option>dpm2</option>
    <option>dpm++2m</option><option>dpm++2s_a</option><option>lcm</option><option>ddim</option><option>ddim_trailing</option>
    <option>ipndm</option><option>tcd</option></select></label>
  <label>Scheduler<select id="scheduler" name="scheduler"><option>discrete</option><option>karras</option><option>exponential</option>
    <option>simple</option><option>sgm_uniform</option><option>lcm</option><option>ays</option></select></label>
  <label>Seed (-1: random)<input id="seed" name="seed" type="number" value="-1"></label>
  <label>Images<input id="batchCount" name="batchCount" type="number" min="1" max="64" value="1"></label>
  <label>API key (if the server has one)<input id="apiKey" type="password" autocomplete="off"></label>
  <div class="row">
    <button id="generate" type="submit">Generate</button>
    <button id="cancel" type="button" disabled>Cancel</button>
    <progress id="bar" max="1" value="0"></progress>
  </div>
  <div id="status" class="wide" role="status"></div>
</form>
<div id="out"><img id="preview" alt="preview" hidden></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;

function headers(json) {
  const h = {};
  if (json) h["content-type"] = "application/json";
  const key = $("apiKey").value.trim();
  if (key) h["authorization"] = "Bearer " + key;
  return h;
}
function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "wide error" : "wide";
}
async function errorText(res) {
  try { const j = await res.json(); return (j.error && j.error.message) || res.statusText; } catch { return res.statusText; }
}
async function loadModels() {
  try {
    const res = await fetch("/v1/models", { headers: headers(false) });
    if (!res.ok) { setStatus(await errorText(res), true); return; }
    const list = (await res.json()).data;
    $("model").innerHTML = "";
    for (const m of list) { const o = document.createElement("option"); o.textContent = m.id; $("model").appendChild(o); }
  } catch (e) { setStatus(String(e), true); }
}
function body() {
  const b = { prompt: $("prompt").value, previewEvery: 1 };
  const neg = $("negativePrompt").value; if (neg) b.negativePrompt = neg;
  for (const k of ["width", "height", "steps", "seed", "batchCount"]) b[k] = parseInt($(k).value, 10);
  b.cfgScale = parseFloat($("cfgScale").value);
  b.sampler = $("sampler").value; b.scheduler = $("scheduler").value;
  if ($("model").value) b.model = $("model").value;
  return b;
}
async function showImages(job) {
  const out = $("out");
  for (const img of [...out.querySelectorAll("img.result")]) { URL.revokeObjectURL(img.src); img.remove(); }
  for (const im of job.images) {
    const res = await fetch(im.url, { headers: headers(false) });
    const el = document.createElement("img");
    el.className = "result"; el.alt = "seed " + im.seed; el.title = im.infotext;
    el.src = URL.createObjectURL(await res.blob());
    out.appendChild(el);
  }
}
function onEvent(type, data) {
  if (type === "progress") {
    $("bar").value = data.fraction;
    const eta = data.etaMs != null ? ", about " + Math.ceil(data.etaMs / 1000) + " s left" : "";
    setStatus(data.phase + " " + data.step + "/" + data.steps + (data.images > 1 ? " (image " + (data.image + 1) + "/" + data.images + ")" : "") + eta);
  } else if (type === "preview") {
    $("preview").src = data.image; $("preview").hidden = false;
  } else if (type === "status") {
    if (data.status === "queued") setStatus("queued");
  } else if (type === "result") {
    $("bar").value = 1; $("preview").hidden = true;
    setStatus("done in " + (data.elapsedMs / 1000).toFixed(1) + " s, seed " + data.images.map((i) => i.seed).join(", "));
    showImages(data);
    return true;
  } else if (type === "error") {
    setStatus(data.status + ": " + data.message, data.status !== "cancelled");
    return true;
  }
  return false;
}
async function follow(id, signal) {
  const res = await fetch("/v1/jobs/" + id + "/events", { headers: headers(false), signal });
  if (!res.ok) throw new Error(await errorText(res));
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\\n\\n")) >= 0) {
      const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
      let type = "message", data = "";
      for (const line of chunk.split("\\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data && onEvent(type, JSON.parse(data))) return;
    }
  }
}
$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (current) return;
  $("generate").disabled = true; $("cancel").disabled = false; $("bar").value = 0;
  setStatus("submitting");
  const ctrl = new AbortController();
  current = { id: null, ctrl };
  try {
    const res = await fetch("/v1/jobs", { method: "POST", headers: headers(true), body: JSON.stringify(body()) });
    if (!res.ok) throw new Error(await errorText(res));
    const job = await res.json();
    current.id = job.id;
    document.body.dataset.job = job.id;
    await follow(job.id, ctrl.signal);
  } catch (e) {
    if (e.name !== "AbortError") setStatus(e.message || String(e), true);
  } finally {
    current = null;
    $("generate").disabled = false; $("cancel").disabled = true;
  }
});
$("cancel").addEventListener("click", async () => {
  if (!current || !current.id) return;
  $("cancel").disabled = true;
  const res = await fetch("/v1/jobs/" + current.id, { method: "DELETE", headers: headers(false) });
  if (!res.ok && res.status !== 409) setStatus(await errorText(res), true);
});
$("apiKey").addEventListener("change", loadModels);
loadModels();
</script>
</body>
</html>
`;
