#!/usr/bin/env node
// Writes the generated part of the fuzz seed corpora (test/fixtures/fuzz-seeds/<target>/gen-*): small, valid (or
// nearly valid) files that reach deep into each parser, so that scripts/fuzz.sh starts from inputs covering every
// branch we know of instead of having to discover the formats' structure by mutation. Every byte is made here.
//   gguf/         every tensor type the reader knows (F32, F16, BF16, the legacy and K quants, I8..F64), one block
//                 each; key/values of every scalar type, arrays of every element type, string arrays (merges),
//                 a custom alignment, GGUF version 2
//   safetensors/  odd headers: space padding, \u escapes and UTF-8 in names and metadata, every dtype (F8, BOOL,
//                 U8..U64 are skipped by the reader), zero-element and scalar shapes, data in reverse order, kohya /
//                 diffusers / LDM name styles
//   json/         diffusers model_index.json, a U-Net config.json, a sharded-weights index, escapes and numbers
//   model/        the SD1 seed's tensors as GGUF with quantized weights; the small (norm/bias) tensors of the SD2 and
//                 SDXL layouts (names from scripts/make-tiny-model.js) so detection sees every family
//   ckpt/         pickles using the opcodes the restricted unpickler knows (dict/list/tuple forms, memo, longs)
//   adapters/     LoRAs (kohya SD 1.x and SDXL with alpha, a LoCon convolution and a LoHa tensor; PEFT/diffusers
//                 names) and textual-inversion embeddings (emb_params, string_to_param, SDXL clip_l/clip_g, clip_h)
//   node scripts/make-fuzz-seeds.js [OUT_ROOT]      (default test/fixtures/fuzz-seeds; files are rewritten)
'use strict';
const fs = require('fs');
const path = require('path');

const u8 = (v) => Buffer.from([v & 0xff]);
const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const i32 = (v) => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const f32 = (v) => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };
const f64 = (v) => { const b = Buffer.alloc(8); b.writeDoubleLE(v); return b; };
const gstr = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u64(b.length), b]); };

// Deterministic bytes (xorshift32), so the seeds are the same on every run.
function bytes(n, seed = 1) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; ++i) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
function f16(v) {  // round-to-nearest half for small normal values (enough for seeds)
  const f = new Float32Array([v]); const i = new Uint32Array(f.buffer)[0];
  const s = (i >>> 16) & 0x8000; let e = ((i >>> 23) & 0xff) - 127 + 15; const m = (i >>> 13) & 0x3ff;
  if (v === 0) return s;
  if (e <= 0) return s; if (e >= 31) return s | 0x7c00;
  return s | (e << 10) | m;
}
function f16buf(values) { const b = Buffer.alloc(values.length * 2); values.forEach((v, i) => b.writeUInt16LE(f16(v), i * 2)); return b; }
function f32buf(values) { const b = Buffer.alloc(values.length * 4); values.forEach((v, i) => b.writeFloatLE(v, i * 4)); return b; }
const numel = (shape) => shape.reduce((a, d) => a * d, 1);

// ---------------------------------------------------------------------------------------------------------
// GGUF
// ---------------------------------------------------------------------------------------------------------
const GT = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12 };
// name -> [ggml type id, block size, bytes per block]
const QT = {
  f32: [0, 1, 4], f16: [1, 1, 2], q4_0: [2, 32, 18], q4_1: [3, 32, 20], q5_0: [6, 32, 22], q5_1: [7, 32, 24],
  q8_0: [8, 32, 34], q8_1: [9, 32, 36], q2_K: [10, 256, 84], q3_K: [11, 256, 110], q4_K: [12, 256, 144],
  q5_K: [13, 256, 176], q6_K: [14, 256, 210], q8_K: [15, 256, 292], i8: [24, 1, 1], i16: [25, 1, 2], i32: [26, 1, 4],
  i64: [27, 1, 8], f64: [28, 1, 8], bf16: [30, 1, 2],
};
const kvScalar = (key, type, valueBuf) => Buffer.concat([gstr(key), u32(type), valueBuf]);
const kvString = (key, s) => kvScalar(key, GT.STRING, gstr(s));
const kvArray = (key, et, items) => Buffer.concat([gstr(key), u32(GT.ARRAY), u32(et), u64(items.length), ...items]);

// Quantized blocks whose scales are small normal halves (so dequantization gives finite numbers).
function quantBytes(type, nblocks, seed) {
  const [, , bpb] = QT[type];
  const b = bytes(bpb * nblocks, seed);
  const putHalf = (off) => b.writeUInt16LE(f16(0.01 + (b[off] % 16) / 256), off);
  for (let k = 0; k < nblocks; ++k) {
    const o = k * bpb;
    switch (type) {
      case 'q4_0': case 'q5_0': case 'q8_0': putHalf(o); break;
      case 'q4_1': case 'q5_1': case 'q8_1': putHalf(o); putHalf(o + 2); break;
      case 'q2_K': putHalf(o + 80); putHalf(o + 82); break;
      case 'q3_K': putHalf(o + 108); break;
      case 'q4_K': case 'q5_K': putHalf(o); putHalf(o + 2); break;
      case 'q6_K': putHalf(o + 208); break;
      case 'q8_K': b.writeFloatLE(0.02, o); break;
      default: break;
    }
  }
  return b;
}
function tensorBytes(type, shape, seed) {
  const [, bs, bpb] = QT[type];
  const n = numel(shape);
  if (type === 'f32') return f32buf(Array.from({ length: n }, (_, i) => Math.sin(i + seed) * 0.1));
  if (type === 'f16') return f16buf(Array.from({ length: n }, (_, i) => Math.sin(i + seed) * 0.1));
  if (type === 'f64') { const b = Buffer.alloc(n * 8); for (let i = 0; i < n; ++i) b.writeDoubleLE(Math.cos(i) * 0.1, i * 8); return b; }
  if (type === 'bf16') { const b = Buffer.alloc(n * 2); for (let i = 0; i < n; ++i) b.writeUInt16LE(f32((i % 7) * 0.01).readUInt16LE(2), i * 2); return b; }
  if (bs === 1) return bytes(n * bpb, seed);
  return quantBytes(type, n / bs, seed);
}
// tensors: [{ name, shape (torch order), type }] -> GGUF bytes (dims in ggml order, data aligned).
function gguf({ version = 3, kv = [], tensors = [], alignment = 32 } = {}) {
  const datas = []; const infos = []; let off = 0;
  for (const [i, t] of tensors.entries()) {
    const d = t.data || tensorBytes(t.type, t.shape, i + 1);
    off += (alignment - (off % alignment)) % alignment;
    infos.push(Buffer.concat([gstr(t.name), u32(t.shape.length), ...t.shape.slice().reverse().map(u64), u32(QT[t.type][0]), u64(off)]));
    datas.push({ off, d });
    off += d.length;
  }
  const allKv = alignment === 32 ? kv : [kvScalar('general.alignment', GT.UINT32, u32(alignment)), ...kv];
  let head = Buffer.concat([Buffer.from('GGUF'), u32(version), u64(tensors.length), u64(allKv.length), ...allKv, ...infos]);
  head = Buffer.concat([head, Buffer.alloc((alignment - (head.length % alignment)) % alignment)]);
  const data = Buffer.alloc(off);
  for (const { off: o, d } of datas) d.copy(data, o);
  return Buffer.concat([head, data]);
}

function ggufSeeds() {
  const out = {};
  // one tensor of every type, each exactly one row of its block size
  const tensors = Object.keys(QT).map((type) => ({ name: `t.${type}.weight`, shape: [1, QT[type][1] === 1 ? 8 : QT[type][1]], type }));
  out['gen-all-types.gguf'] = gguf({ kv: [kvString('general.architecture', 'sd1')], tensors });
  const every = [
    kvScalar('k.u8', GT.UINT8, u8(200)), kvScalar('k.i8', GT.INT8, u8(-3)), kvScalar('k.u16', GT.UINT16, u16(65535)),
    kvScalar('k.i16', GT.INT16, u16(0x8000)), kvScalar('k.u32', GT.UINT32, u32(0xffffffff)), kvScalar('k.i32', GT.INT32, i32(-7)),
    kvScalar('k.f32', GT.FLOAT32, f32(1.5e-7)), kvScalar('k.bool', GT.BOOL, u8(1)), kvScalar('k.u64', GT.UINT64, u64(2n ** 63n)),
    kvScalar('k.i64', GT.INT64, u64(2n ** 64n - 5n)), kvScalar('k.f64', GT.FLOAT64, f64(-1e300)),
    kvString('k.str', 'caf\u00e9 \u2603 "quoted"\n\ttab'),
    kvArray('a.u8', GT.UINT8, [u8(1), u8(2), u8(3)]), kvArray('a.i8', GT.INT8, [u8(-1)]),
    kvArray('a.u16', GT.UINT16, [u16(1), u16(2)]), kvArray('a.i16', GT.INT16, [u16(0xffff)]),
    kvArray('a.u32', GT.UINT32, [u32(7)]), kvArray('a.i32', GT.INT32, Array.from({ length: 20 }, (_, i) => i32(i - 10))),
    kvArray('a.f32', GT.FLOAT32, [f32(0.5), f32(-0), f32(Infinity)]), kvArray('a.bool', GT.BOOL, [u8(0), u8(1)]),
    kvArray('a.u64', GT.UINT64, [u64(1)]), kvArray('a.i64', GT.INT64, [u64(3)]), kvArray('a.f64', GT.FLOAT64, [f64(NaN)]),
    kvArray('a.str', GT.STRING, ['a', '', 'long string '.repeat(8)].map(gstr)), kvArray('a.empty', GT.UINT32, []),
    kvArray('tokenizer.clip.merges', GT.STRING, ['t h', 'th e', 'a n', 'i n'].map(gstr)),
    kvArray('tokenizer.ggml.merges', GT.STRING, ['o n'].map(gstr)),
    kvString('sdnode.family', 'sd1'), kvString('sdnode.unet.heads', '8'),
  ];
  out['gen-kv-every-type.gguf'] = gguf({ kv: every, tensors: [{ name: 'x', shape: [4], type: 'f32' }] });
  out['gen-v2-align64.gguf'] = gguf({ version: 2, alignment: 64, kv: [kvString('tokenizer.clip.merges', 'a b\nb c\n')],
    tensors: [{ name: 'a', shape: [2, 32], type: 'q8_0' }, { name: 'b', shape: [3], type: 'f16' }, { name: 'c', shape: [], type: 'f32' },
      { name: 'd', shape: [0, 4], type: 'f32' }] });
  out['gen-no-tensors.gguf'] = gguf({ kv: [kvString('general.name', 'empty')] });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------------------
const ST_SIZE = { F32: 4, F16: 2, BF16: 2, F64: 8, I8: 1, I16: 2, I32: 4, I64: 8, F8_E4M3: 1, F8_E5M2: 1, BOOL: 1, U8: 1,
  U16: 2, U32: 4, U64: 8 };
// entries: [{ name, dtype, shape }] (data laid out in order, or reversed); headerText overrides the JSON.
function safetensors(entries, { metadata, reverse = false, pad = ' ', rawNames = false } = {}) {
  const order = reverse ? entries.slice().reverse() : entries;
  let off = 0; const spans = new Map();
  for (const e of order) { const n = numel(e.shape) * ST_SIZE[e.dtype]; spans.set(e, [off, off + n]); off += n; }
  const parts = [];
  if (metadata) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const e of entries) {
    const key = rawNames ? `"${e.name}"` : JSON.stringify(e.name);
    parts.push(`${key}:{"dtype":"${e.dtype}","shape":${JSON.stringify(e.shape)},"data_offsets":${JSON.stringify(spans.get(e))}}`);
  }
  let h = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  h = Buffer.concat([h, Buffer.from(pad.repeat((8 - (h.length % 8)) % 8))]);
  return Buffer.concat([u64(h.length), h, bytes(off, 7)]);
}

function safetensorsSeeds() {
  const out = {};
  out['gen-every-dtype.safetensors'] = safetensors(Object.keys(ST_SIZE).map((dt, i) => ({ name: `t${i}.${dt.toLowerCase()}`, dtype: dt, shape: [2, 3] })),
    { metadata: { format: 'pt', 'sdnode.family': 'sd1' } });
  out['gen-escapes.safetensors'] = safetensors([
    { name: 'caf\\u00e9.weight', dtype: 'F32', shape: [2] }, { name: 'slash\\/and\\\\back', dtype: 'F16', shape: [1] },
    { name: 'snow\u2603man', dtype: 'F32', shape: [] }, { name: 'sur\\ud83d\\ude00rogate', dtype: 'F16', shape: [0, 3] },
  ], { metadata: { 'k\\u0041': 'v\\n\\t\\"x\\"', empty: '' }, rawNames: true, pad: '\t' });
  out['gen-reverse-order.safetensors'] = safetensors([
    { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', dtype: 'F16', shape: [4, 8] },
    { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight', dtype: 'F16', shape: [8, 4] },
    { name: 'lora_unet_down_blocks_0_attentions_0_proj_in.alpha', dtype: 'F32', shape: [] },
    { name: 'lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight', dtype: 'F32', shape: [4, 8] },
    { name: 'unet.down_blocks.0.resnets.0.conv1.lora_A.weight', dtype: 'BF16', shape: [2, 8, 1, 1] },
    { name: 'text_encoder.text_model.final_layer_norm.weight', dtype: 'F32', shape: [8] },
    { name: 'first_stage_model.decoder.conv_in.bias', dtype: 'F64', shape: [4] },
    { name: 'emb_params', dtype: 'F32', shape: [2, 8] },
  ], { reverse: true, metadata: { ss_network_dim: '4', ss_network_alpha: '4.0' } });
  // header padded with many spaces, and a header of just "{}"
  const h = Buffer.from('{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' + ' '.repeat(64));
  out['gen-wide-padding.safetensors'] = Buffer.concat([u64(h.length), h, bytes(16, 3)]);
  out['gen-empty-header.safetensors'] = Buffer.concat([u64(8), Buffer.from('{}      ')]);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------------------
function jsonSeeds() {
  const j = (o) => Buffer.from(JSON.stringify(o, null, 2));
  return {
    'gen-model_index.json': j({ _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.21.0',
      feature_extractor: ['transformers', 'CLIPImageProcessor'], requires_safety_checker: false, safety_checker: [null, null],
      scheduler: ['diffusers', 'PNDMScheduler'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'] }),
    'gen-unet-config.json': j({ act_fn: 'silu', attention_head_dim: [5, 10, 20, 20], block_out_channels: [320, 640, 1280, 1280],
      cross_attention_dim: 1024, down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], norm_eps: 1e-5, norm_num_groups: 32,
      sample_size: 96, use_linear_projection: true, addition_embed_type: null, transformer_layers_per_block: [1, 2, 10],
      projection_class_embeddings_input_dim: 2816, prediction_type: 'v_prediction', scaling_factor: 0.18215 }),
    'gen-weights-index.json': j({ metadata: { total_size: 3438167536 }, weight_map: {
      'text_model.embeddings.token_embedding.weight': 'model-00001-of-00002.safetensors',
      'text_model.final_layer_norm.bias': 'model-00002-of-00002.safetensors' } }),
    'gen-escapes-numbers.json': Buffer.from('{"s":"\\u00e9\\ud83d\\ude00\\n\\t\\\\\\/\\"","n":[0,-0,1e308,-1.5E-300,123456789012345678901234567890,0.1e+2],' +
      '"t":true,"f":false,"z":null,"deep":[[[[[[[[{"a":[{}]}]]]]]]]],"":{"":""}}'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// model (fuzz_model: whole files through detection and shape validation)
// ---------------------------------------------------------------------------------------------------------
function readSafetensors(file) {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = [];
  for (const [name, e] of Object.entries(h)) {
    if (name === '__metadata__') continue;
    out.push({ name, dtype: e.dtype, shape: e.shape, data: b.subarray(base + e.data_offsets[0], base + e.data_offsets[1]) });
  }
  return out;
}
function modelSeeds() {
  const out = {};
  const sd1 = readSafetensors(path.join(__dirname, '..', 'test', 'fixtures', 'fuzz-seeds', 'model', 'sd1-parts.safetensors'));
  // quantize-looking GGUF: rows that are a multiple of 32 get a quant type in turn, the rest keep F16/F32
  const quants = ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1'];
  let qi = 0;
  const tensors = sd1.map((t) => {
    const row = t.shape.length ? t.shape[t.shape.length - 1] : 1;
    if (t.shape.length >= 2 && row % 32 === 0) return { name: t.name, shape: t.shape, type: quants[qi++ % quants.length] };
    return { name: t.name, shape: t.shape, type: t.dtype === 'F16' ? 'f16' : 'f32', data: t.data };
  });
  out['gen-sd1-parts-quant.gguf'] = gguf({ kv: [kvString('sdnode.unet.heads', '8'), kvString('sdnode.family', 'sd1'),
    kvArray('tokenizer.clip.merges', GT.STRING, ['a b', 'c d'].map(gstr))], tensors });
  // the small tensors (norms, biases, scalars) of the SD2 and SDXL layouts: every name through mapping and detection
  const { listTensors } = require('./make-tiny-model.js');
  const small = { unetMult: [1, 1, 1, 1], vaeMult: [1, 1, 1, 1], clipHidden: 8, clipLayers: 1, merges: 10, clip2Hidden: 8, proj: 8,
    unetHeadDim: 8, depth: [0, 1, 1] };
  for (const family of ['sd2', 'sdxl']) {
    const list = listTensors(Object.assign({ family }, small, family === 'sdxl' ? { unetMult: [1, 1, 1] } : {})).filter((t) => numel(t.shape) <= 64 && t.shape.length <= 1);
    const picked = list.filter((_, i) => i % 3 === 0).slice(0, 120);
    out[`gen-${family}-small-tensors.safetensors`] = safetensors(picked.map((t) => ({ name: t.name, dtype: 'F16', shape: t.shape })),
      { metadata: { 'sdnode.family': family } });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// adapters (fuzz_adapters: LoRA and embedding files, matched against tiny SD 1.x / SDXL weights: U-Net width 32,
// text encoders 64 wide, native/tests/tiny_sd.h)
// ---------------------------------------------------------------------------------------------------------
function adaptersSeeds() {
  const pair = (module, down, up, dtype = 'F16', style = ['.lora_down.weight', '.lora_up.weight']) => [
    { name: module + style[0], dtype, shape: down }, { name: module + style[1], dtype, shape: up }];
  const alpha = (module) => ({ name: `${module}.alpha`, dtype: 'F32', shape: [] });
  const q = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q';
  const k2 = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k';
  const te = 'lora_te_text_model_encoder_layers_0_self_attn_q_proj';
  const conv = 'lora_unet_down_blocks_0_resnets_0_conv1';
  return {
    'gen-kohya-sd1.safetensors': safetensors([...pair(q, [4, 32], [32, 4]), alpha(q), ...pair(k2, [4, 64], [32, 4]), alpha(k2),
      ...pair(te, [4, 64], [64, 4], 'F32'), alpha(te), ...pair(conv, [4, 32, 3, 3], [32, 4, 1, 1]),
      { name: 'lora_unet_mid_block_attentions_0_norm.hada_w1_a', dtype: 'F16', shape: [4, 4] }],
    { metadata: { ss_network_module: 'networks.lora', ss_network_dim: '4', ss_base_model_version: 'sd_v1' } }),
    'gen-peft-sd1.safetensors': safetensors([
      ...pair('unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k', [2, 32], [32, 2], 'F32', ['.lora_A.weight', '.lora_B.weight']),
      ...pair('text_encoder.text_model.encoder.layers.0.self_attn.v_proj', [2, 64], [64, 2], 'BF16', ['.lora.down.weight', '.lora.up.weight']),
      ...pair('down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora', [2, 32], [32, 2], 'F16', ['.down.weight', '.up.weight']),
    ]),
    'gen-kohya-sdxl.safetensors': safetensors([
      ...pair('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q', [4, 64], [64, 4]),
      ...pair('lora_te1_text_model_encoder_layers_0_self_attn_k_proj', [4, 64], [64, 4]),
      ...pair('lora_te2_text_model_encoder_layers_0_self_attn_q_proj', [4, 64], [64, 4]), alpha('lora_te2_text_model_encoder_layers_0_self_attn_q_proj'),
    ]),
    'gen-embedding-emb_params.safetensors': safetensors([{ name: 'emb_params', dtype: 'F32', shape: [2, 64] }]),
    'gen-embedding-string_to_param.safetensors': safetensors([{ name: 'string_to_param.*', dtype: 'F16', shape: [3, 64] },
      { name: 'string_to_token.*', dtype: 'I64', shape: [] }], { metadata: { name: 'style' } }),
    'gen-embedding-sdxl.safetensors': safetensors([{ name: 'clip_l', dtype: 'F16', shape: [1, 64] }, { name: 'clip_g', dtype: 'F32', shape: [1, 64] }]),
    'gen-embedding-clip_h.gguf': gguf({ tensors: [{ name: 'clip_h', shape: [2, 64], type: 'f16' }] }),
  };
}

// ---------------------------------------------------------------------------------------------------------
// ckpt (fuzz_ckpt: the bytes are archive/data.pkl; storage archive/data/0 holds 64 bytes)
// ---------------------------------------------------------------------------------------------------------
function ckptSeeds() {
  const P = (...xs) => Buffer.concat(xs.map((x) => (typeof x === 'string' ? Buffer.from(x, 'latin1') : x)));
  const binunicode = (s) => P('X', u32(Buffer.byteLength(s)), Buffer.from(s, 'utf8'));
  const short = (s) => P('\x8c', u8(s.length), s);
  // a float16 tensor [2, 4] at storage "0", offset 0, and an OrderedDict of it, through protocol 4 opcodes
  const tensor = P('c', 'torch._utils\n_rebuild_tensor_v2\n', '(', '(', short('storage'), 'c', 'torch\nHalfStorage\n',
    short('0'), short('cpu'), 'K', u8(8), 't', 'Q', 'K', u8(0), 'K', u8(2), 'K', u8(4), '\x86', 'K', u8(4), 'K', u8(1), '\x86',
    '\x89', 'c', 'collections\nOrderedDict\n', ')', 'R', 't', 'R');
  const p4 = P('\x80\x04', '\x95', u64(0), 'c', 'collections\nOrderedDict\n', ')', 'R', '\x94', '(',
    binunicode('model.diffusion_model.out.0.weight'), tensor, '\x94', binunicode('global_step'), 'J', i32(1234),
    binunicode('big'), '\x8a', u8(9), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 0]), binunicode('f'), 'G', Buffer.from([0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
    binunicode('again'), 'h', u8(0), 'u', '.');
  const p2 = P('\x80\x02', '}', 'q', u8(0), '(', 'U', u8(10), 'state_dict', '}', 'q', u8(1), '(', 'U', u8(1), 'w', tensor,
    'U', u8(1), 'n', 'N', 'U', u8(1), 'b', '\x88', 'U', u8(1), 'l', ']', '(', 'K', u8(1), 'M', u16(300), 'e', 'u', 'u', '.');
  return { 'gen-protocol4.pkl': p4, 'gen-protocol2-nested.pkl': p2 };
}

function main() {
  const root = path.resolve(process.argv[2] || path.join(__dirname, '..', 'test', 'fixtures', 'fuzz-seeds'));
  const groups = { gguf: ggufSeeds(), safetensors: safetensorsSeeds(), json: jsonSeeds(), model: modelSeeds(), ckpt: ckptSeeds(),
    adapters: adaptersSeeds() };
  for (const [target, files] of Object.entries(groups)) {
    fs.mkdirSync(path.join(root, target), { recursive: true });
    for (const [name, buf] of Object.entries(files)) {
      fs.writeFileSync(path.join(root, target, name), buf);
      console.log(`${target}/${name} ${buf.length} bytes`);
    }
  }
}

if (require.main === module) main();
module.exports = { gguf, safetensors };
