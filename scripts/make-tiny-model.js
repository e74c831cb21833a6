#!/usr/bin/env node
// Writes a tiny Stable Diffusion 1.x checkpoint with seeded random weights, for tests. Same topology as SD1.5
// (UNet: 4 levels, 2 ResBlocks per level, attention at the first 3 levels, transformer depth 1, conv proj_in/out,
// context = CLIP hidden; VAE: 4 levels, 2 encoder / 3 decoder ResnetBlocks per level, mid attention, z = 4;
// CLIP text model: pre-LN transformer, 77 positions), with small, configurable widths.
//
// Forms: a single .safetensors file (LDM names), a .gguf file (same names, dims in ggml order, alignment 32), on
// request a PyTorch-style zip .ckpt (pickle protocol 2, state_dict inside a Lightning-like dict), and a
// diffusers folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json), plus a BPE merges
// file learnt from a small built-in English corpus (vocabulary = 256 + 256 + merges + 2; the CLIP token embedding
// has exactly that many rows).
//
// CLI:   node scripts/make-tiny-model.js OUT_DIR [--dtype f32|f16] [--seed N] [--formats safetensors,gguf,diffusers,ckpt]
//          [--unet-ch 32] [--unet-heads 8] [--vae-ch 32] [--clip-hidden 32] [--clip-layers 2] [--clip-heads 1]
//          [--merges 300] [--in-ch 4] [--no-position-ids] [--sd15] [--dry-run]
//        --dry-run prints "name shape" lines (torch order) and writes nothing; --sd15 uses the real SD1.5 widths.
// Module: const { makeTinyModel, listTensors } = require('./scripts/make-tiny-model.js');
//         makeTinyModel({ outDir, dtype: 'f16', formats: ['safetensors', 'gguf', 'diffusers'] })
//           -> { safetensors, gguf, diffusers, merges, tensors: [{ name, shape, dtype }], vocabSize, options }
//
// Metadata written (safetensors __metadata__, GGUF string keys, diffusers configs): sdnode.tiny = "1",
// sdnode.unet.heads, sdnode.clip.heads, sdnode.family = "sd1", sdnode.prediction = "eps".
//
// --family sd2|sdxl (option `family`) writes the other layouts with the original checkpoints' names:
//  sd2:  linear proj_in/out, heads of --unet-head-dim channels (metadata sdnode.unet.head_dim), OpenCLIP text
//        tower under cond_stage_model.model.* (fused attn.in_proj_weight, exact GELU, text_projection); no
//        prediction declared unless `prediction` is given (loading then probes it). Diffusers: text_encoder/
//        with HF names (q/k/v split from in_proj).
//  sdxl: 3 U-Net levels, no attention at level 0, transformer depth per level (`depth`, default [0, 1, 2]),
//        label_emb (adm = --proj + 6*256), CLIP-L at conditioner.embedders.0.transformer.text_model.* and an
//        OpenCLIP tower at conditioner.embedders.1.model.* (width --clip2-hidden, text_projection [width, proj]).
//        Diffusers: text_encoder/ and text_encoder_2/ (HF names, text_projection.weight = P^T), tokenizer_2/.
'use strict';
const fs = require('fs');
const path = require('path');

// Math functions captured once: inside jest's vm sandbox every global lookup in a hot loop is ~50x slower.
const { imul, sqrt, log, cos, sin, max, PI } = Math;

// ---------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------
const SD15 = {
  unetCh: 320, unetMult: [1, 2, 4, 4], unetHeads: 8, inCh: 4,
  vaeCh: 128, vaeMult: [1, 2, 4, 4], z: 4,
  clipHidden: 768, clipLayers: 12, clipHeads: 12, vocab: 49408, positions: 77,
};

function resolveOptions(o = {}) {
  const base = o.sd15 ? SD15 : {
    unetCh: 32, unetMult: [1, 2, 4, 4], unetHeads: 8, inCh: 4,
    vaeCh: 32, vaeMult: [1, 2, 4, 4], z: 4,
    clipHidden: 32, clipLayers: 2, clipHeads: 1,  // heads = width / 64 as in real CLIP, at least 1 (what native/models/clip.cpp uses)
    vocab: 0, positions: 77,
  };
  const r = Object.assign({}, base, {
    dtype: 'f32', seed: 1234, merges: 300, positionIds: true,
    formats: ['safetensors', 'gguf', 'diffusers'], outDir: null, name: null,
    family: 'sd1', unetHeadDim: 16, clip2Hidden: 32, proj: 32, depth: [0, 1, 2], prediction: undefined,
  });
  for (const k of Object.keys(o)) if (o[k] !== undefined) r[k] = o[k];
  if (!['sd1', 'sd2', 'sdxl'].includes(r.family)) throw new Error(`family must be sd1, sd2 or sdxl, got ${r.family}`);
  if (r.family === 'sdxl' && o.unetMult === undefined) r.unetMult = [1, 2, 4];
  if (r.name === null) r.name = `tiny-${r.family}`;
  if (!['f32', 'f16'].includes(r.dtype)) throw new Error(`dtype must be f32 or f16, got ${r.dtype}`);
  if (r.unetMult.length !== (r.family === 'sdxl' ? 3 : 4) || r.vaeMult.length !== 4)
    throw new Error('channel multipliers must have 4 levels (SD1/SD2 topology; SDXL: 3 U-Net levels)');
  for (const [k, v] of [['unetCh', r.unetCh], ['vaeCh', r.vaeCh]])
    if (v % 32 !== 0) throw new Error(`${k} must be a multiple of 32 (GroupNorm with 32 groups)`);
  if (r.clipHidden % r.clipHeads !== 0) throw new Error('clipHidden must be a multiple of clipHeads');
  // vocab: given explicitly (e.g. 49408, the real CLIP size, to use the standard merges table), else from the merges
  if (!o.sd15 && o.vocab === undefined) r.vocab = 256 + 256 + r.merges + 2;
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Tensor list (LDM names, torch shapes). Order: UNet, VAE, CLIP.
// ---------------------------------------------------------------------------------------------------------
function unetTensors(o) {
  const t = [];
  const add = (n, s) => t.push([`model.diffusion_model.${n}`, s]);
  const ch = o.unetCh, te = ch * 4, mult = o.unetMult;
  const xl = o.family === 'sdxl', linear = o.family !== 'sd1';
  const ctx = xl ? o.clipHidden + o.clip2Hidden : o.clipHidden;
  const hasAttn = (lvl) => (xl ? lvl >= 1 : lvl < mult.length - 1);
  const depthOf = (lvl) => (xl ? o.depth[Math.min(lvl, o.depth.length - 1)] : 1);
  add('time_embed.0.weight', [te, ch]); add('time_embed.0.bias', [te]);
  if (xl) {
    add('label_emb.0.0.weight', [te, o.proj + 6 * 256]); add('label_emb.0.0.bias', [te]);
    add('label_emb.0.2.weight', [te, te]); add('label_emb.0.2.bias', [te]);
  }
  add('time_embed.2.weight', [te, te]); add('time_embed.2.bias', [te]);
  add('input_blocks.0.0.weight', [ch, o.inCh, 3, 3]); add('input_blocks.0.0.bias', [ch]);
  const res = (p, cin, cout) => {
    add(p + 'in_layers.0.weight', [cin]); add(p + 'in_layers.0.bias', [cin]);
    add(p + 'in_layers.2.weight', [cout, cin, 3, 3]); add(p + 'in_layers.2.bias', [cout]);
    add(p + 'emb_layers.1.weight', [cout, te]); add(p + 'emb_layers.1.bias', [cout]);
    add(p + 'out_layers.0.weight', [cout]); add(p + 'out_layers.0.bias', [cout]);
    add(p + 'out_layers.3.weight', [cout, cout, 3, 3]); add(p + 'out_layers.3.bias', [cout]);
    if (cin !== cout) { add(p + 'skip_connection.weight', [cout, cin, 1, 1]); add(p + 'skip_connection.bias', [cout]); }
  };
  const attn = (p, c, depth = 1) => {
    const pshape = linear ? [c, c] : [c, c, 1, 1];
    add(p + 'norm.weight', [c]); add(p + 'norm.bias', [c]);
    add(p + 'proj_in.weight', pshape); add(p + 'proj_in.bias', [c]);
    for (let d = 0; d < depth; d++) {
      const b = `${p}transformer_blocks.${d}.`;
      for (const [a, kv] of [['attn1', c], ['attn2', ctx]]) {
        add(`${b}${a}.to_q.weight`, [c, c]);
        add(`${b}${a}.to_k.weight`, [c, kv]);
        add(`${b}${a}.to_v.weight`, [c, kv]);
        add(`${b}${a}.to_out.0.weight`, [c, c]); add(`${b}${a}.to_out.0.bias`, [c]);
      }
      add(b + 'ff.net.0.proj.weight', [c * 8, c]); add(b + 'ff.net.0.proj.bias', [c * 8]);
      add(b + 'ff.net.2.weight', [c, c * 4]); add(b + 'ff.net.2.bias', [c]);
      for (const n of ['norm1', 'norm2', 'norm3']) { add(`${b}${n}.weight`, [c]); add(`${b}${n}.bias`, [c]); }
    }
    add(p + 'proj_out.weight', pshape); add(p + 'proj_out.bias', [c]);
  };
  const skips = [ch];
  let cur = ch, i = 1;
  mult.forEach((m, lvl) => {
    for (let j = 0; j < 2; j++) {
      res(`input_blocks.${i}.0.`, cur, ch * m); cur = ch * m;
      if (hasAttn(lvl)) attn(`input_blocks.${i}.1.`, cur, depthOf(lvl));
      skips.push(cur); i++;
    }
    if (lvl < mult.length - 1) {
      add(`input_blocks.${i}.0.op.weight`, [cur, cur, 3, 3]); add(`input_blocks.${i}.0.op.bias`, [cur]);
      skips.push(cur); i++;
    }
  });
  res('middle_block.0.', cur, cur); attn('middle_block.1.', cur, depthOf(mult.length - 1)); res('middle_block.2.', cur, cur);
  let ob = 0;
  for (let lvl = mult.length - 1; lvl >= 0; lvl--) {
    for (let j = 0; j < 3; j++) {
      res(`output_blocks.${ob}.0.`, cur + skips.pop(), ch * mult[lvl]); cur = ch * mult[lvl];
      let k = 1;
      if (hasAttn(lvl)) { attn(`output_blocks.${ob}.1.`, cur, depthOf(lvl)); k = 2; }
      if (lvl > 0 && j === 2) {
        add(`output_blocks.${ob}.${k}.conv.weight`, [cur, cur, 3, 3]); add(`output_blocks.${ob}.${k}.conv.bias`, [cur]);
      }
      ob++;
    }
  }
  add('out.0.weight', [ch]); add('out.0.bias', [ch]);
  add('out.2.weight', [4, ch, 3, 3]); add('out.2.bias', [4]);
  return t;
}

function vaeTensors(o) {
  const t = [];
  const add = (n, s) => t.push([`first_stage_model.${n}`, s]);
  const ch = o.vaeCh, mult = o.vaeMult, z = o.z, top = ch * mult[mult.length - 1];
  const rb = (p, cin, cout) => {
    add(p + 'norm1.weight', [cin]); add(p + 'norm1.bias', [cin]);
    add(p + 'conv1.weight', [cout, cin, 3, 3]); add(p + 'conv1.bias', [cout]);
    add(p + 'norm2.weight', [cout]); add(p + 'norm2.bias', [cout]);
    add(p + 'conv2.weight', [cout, cout, 3, 3]); add(p + 'conv2.bias', [cout]);
    if (cin !== cout) { add(p + 'nin_shortcut.weight', [cout, cin, 1, 1]); add(p + 'nin_shortcut.bias', [cout]); }
  };
  const at = (p, c) => {
    add(p + 'norm.weight', [c]); add(p + 'norm.bias', [c]);
    for (const n of ['q', 'k', 'v', 'proj_out']) { add(`${p}${n}.weight`, [c, c, 1, 1]); add(`${p}${n}.bias`, [c]); }
  };
  add('encoder.conv_in.weight', [ch, 3, 3, 3]); add('encoder.conv_in.bias', [ch]);
  let cur = ch;
  mult.forEach((m, i) => {
    for (let j = 0; j < 2; j++) { rb(`encoder.down.${i}.block.${j}.`, cur, ch * m); cur = ch * m; }
    if (i < mult.length - 1) {
      add(`encoder.down.${i}.downsample.conv.weight`, [cur, cur, 3, 3]); add(`encoder.down.${i}.downsample.conv.bias`, [cur]);
    }
  });
  rb('encoder.mid.block_1.', top, top); at('encoder.mid.attn_1.', top); rb('encoder.mid.block_2.', top, top);
  add('encoder.norm_out.weight', [top]); add('encoder.norm_out.bias', [top]);
  add('encoder.conv_out.weight', [2 * z, top, 3, 3]); add('encoder.conv_out.bias', [2 * z]);
  add('quant_conv.weight', [2 * z, 2 * z, 1, 1]); add('quant_conv.bias', [2 * z]);
  add('post_quant_conv.weight', [z, z, 1, 1]); add('post_quant_conv.bias', [z]);
  add('decoder.conv_in.weight', [top, z, 3, 3]); add('decoder.conv_in.bias', [top]);
  rb('decoder.mid.block_1.', top, top); at('decoder.mid.attn_1.', top); rb('decoder.mid.block_2.', top, top);
  cur = top;
  for (let i = mult.length - 1; i >= 0; i--) {
    for (let j = 0; j < 3; j++) { rb(`decoder.up.${i}.block.${j}.`, cur, ch * mult[i]); cur = ch * mult[i]; }
    if (i > 0) { add(`decoder.up.${i}.upsample.conv.weight`, [cur, cur, 3, 3]); add(`decoder.up.${i}.upsample.conv.bias`, [cur]); }
  }
  add('decoder.norm_out.weight', [ch]); add('decoder.norm_out.bias', [ch]);
  add('decoder.conv_out.weight', [3, ch, 3, 3]); add('decoder.conv_out.bias', [3]);
  return t;
}

// OpenCLIP text tower (SD2's ViT-H, SDXL's bigG) with its own names under `prefix`.
function openClipTensors(prefix, w, layers, o, proj) {
  const t = [];
  const add = (n, s) => t.push([prefix + n, s]);
  add('token_embedding.weight', [o.vocab, w]);
  add('positional_embedding', [o.positions, w]);
  for (let i = 0; i < layers; i++) {
    const b = `transformer.resblocks.${i}.`;
    add(b + 'ln_1.weight', [w]); add(b + 'ln_1.bias', [w]);
    add(b + 'attn.in_proj_weight', [3 * w, w]); add(b + 'attn.in_proj_bias', [3 * w]);
    add(b + 'attn.out_proj.weight', [w, w]); add(b + 'attn.out_proj.bias', [w]);
    add(b + 'ln_2.weight', [w]); add(b + 'ln_2.bias', [w]);
    add(b + 'mlp.c_fc.weight', [w * 4, w]); add(b + 'mlp.c_fc.bias', [w * 4]);
    add(b + 'mlp.c_proj.weight', [w, w * 4]); add(b + 'mlp.c_proj.bias', [w]);
  }
  add('ln_final.weight', [w]); add('ln_final.bias', [w]);
  add('text_projection', [w, proj]);
  return t;
}

function clipTensors(o) {
  if (o.family === 'sd2') return openClipTensors('cond_stage_model.model.', o.clipHidden, o.clipLayers, o, o.clipHidden);
  const t = [];
  const pre = o.family === 'sdxl' ? 'conditioner.embedders.0.transformer.text_model.' : 'cond_stage_model.transformer.text_model.';
  const add = (n, s) => t.push([pre + n, s]);
  const w = o.clipHidden;
  add('embeddings.token_embedding.weight', [o.vocab, w]);
  add('embeddings.position_embedding.weight', [o.positions, w]);
  if (o.positionIds) add('embeddings.position_ids', [1, o.positions]);
  for (let i = 0; i < o.clipLayers; i++) {
    const b = `encoder.layers.${i}.`;
    for (const n of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) {
      add(`${b}self_attn.${n}.weight`, [w, w]); add(`${b}self_attn.${n}.bias`, [w]);
    }
    add(b + 'layer_norm1.weight', [w]); add(b + 'layer_norm1.bias', [w]);
    add(b + 'mlp.fc1.weight', [w * 4, w]); add(b + 'mlp.fc1.bias', [w * 4]);
    add(b + 'mlp.fc2.weight', [w, w * 4]); add(b + 'mlp.fc2.bias', [w]);
    add(b + 'layer_norm2.weight', [w]); add(b + 'layer_norm2.bias', [w]);
  }
  add('final_layer_norm.weight', [w]); add('final_layer_norm.bias', [w]);
  if (o.family === 'sdxl') t.push(...openClipTensors('conditioner.embedders.1.model.', o.clip2Hidden, o.clipLayers, o, o.proj));
  return t;
}

function listTensors(opts) {
  const o = resolveOptions(opts);
  return [...unetTensors(o), ...vaeTensors(o), ...clipTensors(o)].map(([name, shape]) => ({
    name, shape, dtype: name.endsWith('position_ids') ? 'i64' : o.dtype,
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic weights
// ---------------------------------------------------------------------------------------------------------
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = imul(h, 0x01000193) >>> 0; }
  return h >>> 0;
}
function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function normals(n, seed) {
  const rnd = mulberry32(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = max(rnd(), 1e-12), u2 = rnd();
    const r = sqrt(-2 * log(u1));
    out[i] = r * cos(2 * PI * u2);
    if (i + 1 < n) out[i + 1] = r * sin(2 * PI * u2);
  }
  return out;
}
const NORM_RE = /(norm|in_layers\.0\.|out_layers\.0\.|out\.0\.|layer_norm|ln_1|ln_2|ln_final)/;
// Values like the golden reference generator's rules: norm scales 1 + 0.05 n, biases 0.02 n, embeddings 0.02 n,
// other weights n / sqrt(fan_in) (so activations stay O(1)).
function tensorValues(name, shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  if (name.endsWith('position_ids')) return Float64Array.from({ length: n }, (_, i) => i);
  const z = normals(n, (fnv1a(name) ^ imul(seed, 0x9e3779b1)) >>> 0);
  let scale = 0.02, offset = 0;
  if (shape.length === 1) {
    if (NORM_RE.test(name) && name.endsWith('.weight')) { scale = 0.05; offset = 1; }
  } else if (!name.includes('embedding') && !name.endsWith('positional_embedding')) {
    scale = 1 / sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
  }
  for (let i = 0; i < n; i++) z[i] = offset + scale * z[i];
  return z;
}

const F32_SCRATCH = new Float32Array(1);
const U32_SCRATCH = new Uint32Array(F32_SCRATCH.buffer);
function f32ToF16(v) {
  F32_SCRATCH[0] = v;
  const u = U32_SCRATCH[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let man = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    man |= 0x800000;
    const shift = 14 - e;
    let h = man >>> shift;
    const rem = man & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;  // a carry into the exponent is the correct rounding (up to inf)
}

function encodeTensor(values, dtype) {
  if (dtype === 'i64') {
    const b = Buffer.alloc(values.length * 8);
    values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
    return b;
  }
  if (dtype === 'f32') return Buffer.from(Float32Array.from(values).buffer);
  const h = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) h[i] = f32ToF16(values[i]);
  return Buffer.from(h.buffer);
}

// ---------------------------------------------------------------------------------------------------------
// BPE merges learnt from a small corpus (ASCII lower-case words)
// ---------------------------------------------------------------------------------------------------------
const CORPUS = `a photo of a red fox in the snow, a painting of a castle on a hill at sunset, portrait of an old man
with a beard, highly detailed, digital art, trending on artstation, a cat sitting on a window sill, a dog running
in the park, the city at night with neon lights, a bowl of fruit on a wooden table, mountains and a lake in the
morning, an astronaut riding a horse on the moon, watercolor landscape with trees and flowers, studio lighting,
sharp focus, concept art, the quick brown fox jumps over the lazy dog, a beautiful woman in a garden, interior of
a cozy cabin in winter, a robot playing chess, fantasy forest with glowing mushrooms, ocean waves crashing on
rocks, cinematic, photorealistic, masterpiece, best quality, ugly, blurry, low quality, bad anatomy, extra fingers,
a small house by the river, children playing in the street, a bird flying over the sea, golden hour, dramatic
clouds, oil painting, pencil sketch, anime style, cyberpunk street, medieval knight, ancient temple, snowy peaks`;

function learnMerges(count) {
  const freq = new Map();
  for (const w of CORPUS.toLowerCase().match(/[a-z]+|[0-9]|[^\sa-z0-9]+/g)) freq.set(w, (freq.get(w) || 0) + 1);
  let words = [...freq.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, f]) => {
    const s = [...w];
    s[s.length - 1] += '</w>';
    return { s, f };
  });
  const merges = [];
  while (merges.length < count) {
    const pairs = new Map();
    for (const { s, f } of words)
      for (let i = 0; i + 1 < s.length; i++) {
        const k = s[i] + ' ' + s[i + 1];
        pairs.set(k, (pairs.get(k) || 0) + f);
      }
    if (pairs.size === 0) break;
    let best = null, bestF = -1;
    for (const [k, f] of pairs) if (f > bestF || (f === bestF && k < best)) { best = k; bestF = f; }
    merges.push(best);
    const [a, b] = best.split(' ');
    words = words.map(({ s, f }) => {
      const o = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { o.push(a + b); i++; } else o.push(s[i]);
      }
      return { s: o, f };
    });
  }
  // The corpus runs out of pairs before a few hundred merges: continue with deterministic letter pairs that are
  // valid (both symbols exist: single byte symbols) and not yet present.
  const have = new Set(merges);
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  for (let i = 0; merges.length < count && i < letters.length; i++)
    for (let j = 0; merges.length < count && j < letters.length; j++) {
      for (const end of ['', '</w>']) {
        const m = `${letters[i]} ${letters[j]}${end}`;
        if (merges.length < count && !have.has(m)) { have.add(m); merges.push(m); }
      }
    }
  return merges;
}

function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  return bs.map((b, i) => [b, String.fromCodePoint(cs[i])]);
}

function vocabJson(merges) {
  const v = {};
  let id = 0;
  const table = bytesToUnicode();
  for (const [, c] of table) v[c] = id++;
  for (const [, c] of table) v[c + '</w>'] = id++;
  for (const m of merges) v[m.replace(' ', '')] = id++;
  v['<|startoftext|>'] = id++;
  v['<|endoftext|>'] = id++;
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------------------
function writeSafetensors(file, tensors, metadata) {
  const header = {};
  let off = 0;
  for (const t of tensors) {
    const n = t.data.length;
    header[t.name] = { dtype: t.dtype.toUpperCase(), shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  if (metadata) header.__metadata__ = metadata;
  let hb = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (hb.length % 8)) % 8;
  hb = Buffer.concat([hb, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  fs.writeFileSync(file, Buffer.concat([len, hb, ...tensors.map((t) => t.data)]));
}

const GGUF_TYPE = { f32: 0, f16: 1, i32: 26, i64: 27 };
function writeGguf(file, tensors, kv) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  parts.push(Buffer.from('GGUF', 'ascii'));
  u32(3);
  u64(tensors.length);
  const entries = Object.entries(kv);
  u64(entries.length + 1);
  str('general.alignment'); u32(4); u32(32);
  for (const [k, v] of entries) { str(k); u32(8); str(String(v)); }
  const align = (x) => (x + 31) & ~31;
  let off = 0;
  const offsets = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) u64(d);
    u32(GGUF_TYPE[t.dtype]);
    u64(off);
    offsets.push(off);
    off = align(off + t.data.length);
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(align(head.length) - head.length)]);
  const body = Buffer.alloc(off);
  tensors.forEach((t, i) => t.data.copy(body, offsets[i]));
  fs.writeFileSync(file, Buffer.concat([head, body]));
}

// PyTorch zip checkpoint (what torch.save writes, ENGINE-FACTS Appendix B): archive/data.pkl (pickle protocol 2)
// + one stored (uncompressed) entry per storage. The state dict sits under "state_dict" next to a plain int and
// an arbitrary class instance (as Lightning checkpoints have), which readers must tolerate without executing it.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function writeZipStored(file, entries) {
  const parts = [], central = [];
  let off = 0;
  for (const [name, data] of entries) {
    const nb = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt16LE(0, 6); lh.writeUInt16LE(0, 8);
    lh.writeUInt32LE(crc, 14); lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(nb.length, 26); lh.writeUInt16LE(0, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16); ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(nb.length, 28); ch.writeUInt32LE(off, 42);
    central.push(ch, nb);
    parts.push(lh, nb, data);
    off += 30 + nb.length + data.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0); eocd.writeUInt16LE(entries.length, 8); eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12); eocd.writeUInt32LE(off, 16);
  fs.writeFileSync(file, Buffer.concat([...parts, cd, eocd]));
}
function writeCkpt(file, tensors) {
  const ops = [];
  const byte = (...b) => ops.push(Buffer.from(b));
  const uni = (s) => { const b = Buffer.from(s, 'utf8'); const h = Buffer.alloc(5); h[0] = 0x58; h.writeUInt32LE(b.length, 1); ops.push(h, b); };
  const int = (v) => { const h = Buffer.alloc(5); h[0] = 0x4a; h.writeInt32LE(v, 1); ops.push(h); };
  const glob = (m, n) => ops.push(Buffer.from(`c${m}\n${n}\n`, 'latin1'));
  const MARK = 0x28, TUPLE = 0x74, REDUCE = 0x52, SETITEMS = 0x75, EMPTY_TUPLE = 0x29;
  const storageType = { f32: 'FloatStorage', f16: 'HalfStorage', i64: 'LongStorage' };
  byte(0x80, 2);
  byte(0x7d); byte(0x71, 0);  // {} memo 0
  byte(MARK);
  uni('global_step'); int(5);
  uni('callbacks'); glob('pytorch_lightning.callbacks.model_checkpoint', 'ModelCheckpoint'); byte(EMPTY_TUPLE, REDUCE, 0x7d, 0x62);
  uni('state_dict'); glob('collections', 'OrderedDict'); byte(EMPTY_TUPLE, REDUCE); byte(0x71, 1);
  byte(MARK);
  const entries = [];
  tensors.forEach((t, i) => {
    uni(t.name);
    if (i === 0) { glob('torch._utils', '_rebuild_tensor_v2'); byte(0x71, 2); } else byte(0x68, 2);  // memo 2
    byte(MARK);
    byte(MARK); uni('storage'); glob('torch', storageType[t.dtype]); uni(String(i)); uni('cpu');
    int(t.shape.reduce((a, b) => a * b, 1)); byte(TUPLE, 0x51);  // BINPERSID
    int(0);
    byte(MARK); for (const d of t.shape) int(d); byte(TUPLE);
    const strides = t.shape.map((_, k) => t.shape.slice(k + 1).reduce((a, b) => a * b, 1));
    byte(MARK); for (const d of strides) int(d); byte(TUPLE);
    byte(0x89);  // requires_grad False
    glob('collections', 'OrderedDict'); byte(EMPTY_TUPLE, REDUCE);
    byte(TUPLE, REDUCE);
    entries.push([`archive/data/${i}`, t.data]);
  });
  byte(SETITEMS);
  byte(SETITEMS);
  byte(0x2e);  // STOP
  writeZipStored(file, [['archive/data.pkl', Buffer.concat(ops)], ...entries, ['archive/byteorder', Buffer.from('little')],
    ['archive/version', Buffer.from('3\n')]]);
}

// LDM -> diffusers names (the inverse of ENGINE-FACTS 4.7), for the SD1 layout.
// OpenCLIP tower name (after its prefix) -> HF CLIPTextModel(WithProjection) name.
function openClipToHf(n) {
  let m;
  if (n === 'token_embedding.weight') return 'text_model.embeddings.token_embedding.weight';
  if (n === 'positional_embedding') return 'text_model.embeddings.position_embedding.weight';
  if (n === 'text_projection') return 'text_projection.weight';
  if ((m = n.match(/^ln_final\.(.*)$/))) return `text_model.final_layer_norm.${m[1]}`;
  if ((m = n.match(/^transformer\.resblocks\.(\d+)\.(.*)$/))) {
    const r = m[2].replace(/^ln_1\./, 'layer_norm1.').replace(/^ln_2\./, 'layer_norm2.')
      .replace(/^attn\.out_proj\./, 'self_attn.out_proj.').replace(/^mlp\.c_fc\./, 'mlp.fc1.').replace(/^mlp\.c_proj\./, 'mlp.fc2.');
    return `text_model.encoder.layers.${m[1]}.${r}`;
  }
  throw new Error(`no HF name for OpenCLIP ${n}`);
}

function toDiffusers(name, o) {
  let m;
  if (name.startsWith('cond_stage_model.transformer.')) return ['text_encoder', name.slice('cond_stage_model.transformer.'.length)];
  if (name.startsWith('conditioner.embedders.0.transformer.')) return ['text_encoder', name.slice('conditioner.embedders.0.transformer.'.length)];
  if (name.startsWith('cond_stage_model.model.')) return ['text_encoder', openClipToHf(name.slice('cond_stage_model.model.'.length))];
  if (name.startsWith('conditioner.embedders.1.model.')) return ['text_encoder_2', openClipToHf(name.slice('conditioner.embedders.1.model.'.length))];
  if (name.startsWith('first_stage_model.')) {
    let n = name.slice('first_stage_model.'.length);
    if ((m = n.match(/^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$/))) n = `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3]}`;
    else if ((m = n.match(/^encoder\.down\.(\d+)\.downsample\.conv\.(.*)$/))) n = `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
    else if ((m = n.match(/^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$/))) n = `decoder.up_blocks.${3 - +m[1]}.resnets.${m[2]}.${m[3]}`;
    else if ((m = n.match(/^decoder\.up\.(\d+)\.upsample\.conv\.(.*)$/))) n = `decoder.up_blocks.${3 - +m[1]}.upsamplers.0.conv.${m[2]}`;
    else if ((m = n.match(/^(encoder|decoder)\.mid\.block_(\d)\.(.*)$/))) n = `${m[1]}.mid_block.resnets.${+m[2] - 1}.${m[3]}`;
    else if ((m = n.match(/^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(.*)$/))) {
      const map = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };
      n = `${m[1]}.mid_block.attentions.0.${map[m[2]]}.${m[3]}`;
    } else if ((m = n.match(/^(encoder|decoder)\.norm_out\.(.*)$/))) n = `${m[1]}.conv_norm_out.${m[2]}`;
    n = n.replace('.nin_shortcut.', '.conv_shortcut.');
    return ['vae', n];
  }
  let n = name.slice('model.diffusion_model.'.length);
  const resMap = (r) => r.replace(/^in_layers\.0\./, 'norm1.').replace(/^in_layers\.2\./, 'conv1.')
    .replace(/^emb_layers\.1\./, 'time_emb_proj.').replace(/^out_layers\.0\./, 'norm2.')
    .replace(/^out_layers\.3\./, 'conv2.').replace(/^skip_connection\./, 'conv_shortcut.');
  if ((m = n.match(/^time_embed\.(0|2)\.(.*)$/))) return ['unet', `time_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`];
  if ((m = n.match(/^label_emb\.0\.(0|2)\.(.*)$/))) return ['unet', `add_embedding.linear_${m[1] === '0' ? 1 : 2}.${m[2]}`];
  if ((m = n.match(/^input_blocks\.0\.0\.(.*)$/))) return ['unet', `conv_in.${m[1]}`];
  if ((m = n.match(/^out\.(0|2)\.(.*)$/))) return ['unet', `${m[1] === '0' ? 'conv_norm_out' : 'conv_out'}.${m[2]}`];
  if ((m = n.match(/^input_blocks\.(\d+)\.0\.op\.(.*)$/))) return ['unet', `down_blocks.${(+m[1] - 3) / 3}.downsamplers.0.conv.${m[2]}`];
  if ((m = n.match(/^input_blocks\.(\d+)\.(0|1)\.(.*)$/))) {
    const k = +m[1] - 1, i = Math.floor(k / 3), j = k % 3;
    return ['unet', m[2] === '0' ? `down_blocks.${i}.resnets.${j}.${resMap(m[3])}` : `down_blocks.${i}.attentions.${j}.${m[3]}`];
  }
  if ((m = n.match(/^middle_block\.(\d)\.(.*)$/))) {
    if (m[1] === '1') return ['unet', `mid_block.attentions.0.${m[2]}`];
    return ['unet', `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${resMap(m[2])}`];
  }
  if ((m = n.match(/^output_blocks\.(\d+)\.(\d)\.(.*)$/))) {
    // SD1/SD2: up_blocks.0 is the attention-free level; SDXL: the last one (level 0)
    const i = Math.floor(+m[1] / 3), j = +m[1] % 3, hasAttn = o.family === 'sdxl' ? i < o.unetMult.length - 1 : i > 0;
    if (m[2] === '0') return ['unet', `up_blocks.${i}.resnets.${j}.${resMap(m[3])}`];
    if (m[3].startsWith('conv.')) return ['unet', `up_blocks.${i}.upsamplers.0.${m[3]}`];
    if (hasAttn && m[2] === '1') return ['unet', `up_blocks.${i}.attentions.${j}.${m[3]}`];
  }
  throw new Error(`no diffusers name for ${name}`);
}

// Elements of an encoded tensor: bytes per element of its dtype.
const ELEM_BYTES = { f32: 4, f16: 2, i64: 8 };

function writeDiffusers(dir, tensors, o, merges, metadata) {
  const parts = { unet: [], vae: [], text_encoder: [], text_encoder_2: [] };
  for (const t of tensors) {
    if (t.name.endsWith('position_ids')) continue;  // diffusers text encoders do not store it
    let m;
    if ((m = t.name.match(/^(cond_stage_model|conditioner\.embedders\.1)\.model\.transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$/))) {
      // fused q/k/v -> HF q_proj / k_proj / v_proj (row slices)
      const comp = m[1] === 'cond_stage_model' ? 'text_encoder' : 'text_encoder_2';
      const rows = t.shape[0] / 3, rowBytes = t.data.length / t.shape[0];
      ['q_proj', 'k_proj', 'v_proj'].forEach((q, k) => {
        parts[comp].push({
          name: `text_model.encoder.layers.${m[2]}.self_attn.${q}.${m[3]}`, shape: [rows, ...t.shape.slice(1)], dtype: t.dtype,
          data: t.data.subarray(k * rows * rowBytes, (k + 1) * rows * rowBytes),
        });
      });
      continue;
    }
    const [comp, n] = toDiffusers(t.name, o);
    let shape = t.shape, data = t.data;
    // diffusers VAE attention projections are Linear [C, C] (LDM: 1x1 conv [C, C, 1, 1]).
    if (comp === 'vae' && /mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(n)) shape = shape.slice(0, 2);
    if (n === 'text_projection.weight') {
      // OpenCLIP P [width, proj] -> HF Linear weight P^T [proj, width]
      const [r, c] = shape, e = ELEM_BYTES[t.dtype];
      data = Buffer.alloc(t.data.length);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t.data.copy(data, (j * r + i) * e, (i * c + j) * e, (i * c + j + 1) * e);
      shape = [c, r];
    }
    parts[comp].push({ name: n, shape, dtype: t.dtype, data });
  }
  const mk = (p) => fs.mkdirSync(path.join(dir, p), { recursive: true });
  const json = (p, v) => fs.writeFileSync(path.join(dir, p), JSON.stringify(v, null, 2) + '\n');
  const variant = o.dtype === 'f16' ? '.fp16' : '';
  const xl = o.family === 'sdxl';
  for (const d of ['unet', 'vae', 'text_encoder', 'tokenizer', 'scheduler', ...(xl ? ['text_encoder_2', 'tokenizer_2'] : [])]) mk(d);
  json('model_index.json', {
    _class_name: 'StableDiffusionPipeline', _diffusers_version: '0.21.0',
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'],
    scheduler: ['diffusers', 'PNDMScheduler'],
    ...(xl ? { _class_name: 'StableDiffusionXLPipeline', text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], tokenizer_2: ['transformers', 'CLIPTokenizer'] } : {}),
  });
  json('unet/config.json', {
    _class_name: 'UNet2DConditionModel', in_channels: o.inCh, out_channels: 4, cross_attention_dim: o.clipHidden,
    block_out_channels: o.unetMult.map((m) => m * o.unetCh), layers_per_block: 2, attention_head_dim: o.unetHeads,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    use_linear_projection: o.family !== 'sd1',
  });
  json('vae/config.json', {
    _class_name: 'AutoencoderKL', block_out_channels: o.vaeMult.map((m) => m * o.vaeCh), latent_channels: o.z,
    layers_per_block: 2, in_channels: 3, out_channels: 3, scaling_factor: 0.18215,
  });
  json('text_encoder/config.json', {
    architectures: ['CLIPTextModel'], hidden_size: o.clipHidden, intermediate_size: o.clipHidden * 4,
    num_attention_heads: o.clipHeads, num_hidden_layers: o.clipLayers, vocab_size: o.vocab,
    max_position_embeddings: o.positions, hidden_act: 'quick_gelu',
  });
  json('scheduler/scheduler_config.json', {
    _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
    num_train_timesteps: 1000,
    ...(o.family === 'sd2' && !o.prediction ? {} : { prediction_type: o.prediction === 'v' ? 'v_prediction' : 'epsilon' }),
  });
  if (xl) {
    json('text_encoder_2/config.json', {
      architectures: ['CLIPTextModelWithProjection'], hidden_size: o.clip2Hidden, intermediate_size: o.clip2Hidden * 4,
      num_attention_heads: o.clipHeads, num_hidden_layers: o.clipLayers, vocab_size: o.vocab,
      max_position_embeddings: o.positions, hidden_act: 'gelu', projection_dim: o.proj,
    });
    fs.writeFileSync(path.join(dir, 'tokenizer_2/merges.txt'), merges);
    json('tokenizer_2/vocab.json', vocabJson(o.mergeList));
    writeSafetensors(path.join(dir, `text_encoder_2/model${variant}.safetensors`), parts.text_encoder_2, metadata);
  }
  fs.writeFileSync(path.join(dir, 'tokenizer/merges.txt'), merges);
  json('tokenizer/vocab.json', vocabJson(o.mergeList));
  json('tokenizer/tokenizer_config.json', { model_max_length: 77, bos_token: '<|startoftext|>', eos_token: '<|endoftext|>' });
  writeSafetensors(path.join(dir, `unet/diffusion_pytorch_model${variant}.safetensors`), parts.unet, metadata);
  writeSafetensors(path.join(dir, `vae/diffusion_pytorch_model${variant}.safetensors`), parts.vae, metadata);
  writeSafetensors(path.join(dir, `text_encoder/model${variant}.safetensors`), parts.text_encoder, metadata);
}

function makeTinyModel(opts = {}) {
  const o = resolveOptions(opts);
  if (o.sd15) throw new Error('--sd15 is for --dry-run listings only (the real widths are far too large for tests)');
  if (!o.outDir) throw new Error('outDir is required');
  fs.mkdirSync(o.outDir, { recursive: true });
  o.mergeList = learnMerges(o.merges);
  const mergesText = '#version: 0.2\n' + o.mergeList.map((m) => m + '\n').join('');
  const list = listTensors(o);
  const tensors = list.map((t) => ({ ...t, data: encodeTensor(tensorValues(t.name, t.shape, o.seed), t.dtype) }));
  const metadata = {
    'sdnode.tiny': '1', 'sdnode.family': o.family, 'sdnode.clip.heads': String(o.clipHeads), 'sdnode.seed': String(o.seed),
  };
  if (o.family === 'sd1') metadata['sdnode.unet.heads'] = String(o.unetHeads);
  else metadata['sdnode.unet.head_dim'] = String(o.unetHeadDim);
  if (o.family !== 'sd2' || o.prediction) metadata['sdnode.prediction'] = o.prediction || 'eps';
  const result = { tensors: list, vocabSize: o.vocab, options: o };
  result.merges = path.join(o.outDir, `${o.name}-merges.txt`);
  fs.writeFileSync(result.merges, mergesText);
  if (o.formats.includes('safetensors')) {
    result.safetensors = path.join(o.outDir, `${o.name}.safetensors`);
    writeSafetensors(result.safetensors, tensors, metadata);
  }
  if (o.formats.includes('gguf')) {
    result.gguf = path.join(o.outDir, `${o.name}.gguf`);
    // GGUF as stable-diffusion.cpp writes it: no position_ids; plus our metadata and the merges text.
    writeGguf(result.gguf, tensors.filter((t) => !t.name.endsWith('position_ids')),
      { ...metadata, 'general.architecture': 'stable-diffusion', 'tokenizer.clip.merges': mergesText });
  }
  if (o.formats.includes('ckpt')) {
    result.ckpt = path.join(o.outDir, `${o.name}.ckpt`);
    writeCkpt(result.ckpt, tensors);
  }
  if (o.formats.includes('diffusers')) {
    result.diffusers = path.join(o.outDir, `${o.name}-diffusers`);
    writeDiffusers(result.diffusers, tensors, o, mergesText, metadata);
  }
  return result;
}

module.exports = {
  makeTinyModel, listTensors, learnMerges, f32ToF16, tensorValues, writeCkpt, writeSafetensors, writeGguf,
  // for scripts/make-tiny-controlnet.js
  resolveOptions, unetTensors, toDiffusers, encodeTensor,
};

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opts = {};
  let outDir = null, dry = false;
  const num = (v, f) => { const n = Number(v); if (!Number.isFinite(n)) throw new Error(`${f} needs a number`); return n; };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--dtype': opts.dtype = next(); break;
      case '--seed': opts.seed = num(next(), a); break;
      case '--formats': opts.formats = next().split(','); break;
      case '--unet-ch': opts.unetCh = num(next(), a); break;
      case '--unet-heads': opts.unetHeads = num(next(), a); break;
      case '--family': opts.family = next(); break;
      case '--unet-head-dim': opts.unetHeadDim = num(next(), a); break;
      case '--clip2-hidden': opts.clip2Hidden = num(next(), a); break;
      case '--proj': opts.proj = num(next(), a); break;
      case '--prediction': opts.prediction = next(); break;
      case '--vae-ch': opts.vaeCh = num(next(), a); break;
      case '--clip-hidden': opts.clipHidden = num(next(), a); break;
      case '--clip-layers': opts.clipLayers = num(next(), a); break;
      case '--clip-heads': opts.clipHeads = num(next(), a); break;
      case '--merges': opts.merges = num(next(), a); break;
      case '--in-ch': opts.inCh = num(next(), a); break;
      case '--name': opts.name = next(); break;
      case '--no-position-ids': opts.positionIds = false; break;
      case '--sd15': opts.sd15 = true; break;
      case '--dry-run': dry = true; break;
      case '-h': case '--help':
        console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 22).join('\n'));
        process.exit(0);
        break;
      default:
        if (a.startsWith('-') || outDir) { console.error(`unknown argument ${a}`); process.exit(2); }
        outDir = a;
    }
  }
  if (dry) {
    for (const t of listTensors(opts)) console.log(`${t.name} ${t.shape.join('x')}`);
  } else {
    if (!outDir) { console.error('usage: make-tiny-model.js OUT_DIR [options] (or --dry-run)'); process.exit(2); }
    const t0 = Date.now();
    const r = makeTinyModel({ ...opts, outDir });
    const params = r.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    console.log(`wrote ${r.tensors.length} tensors (${(params / 1e6).toFixed(2)}M parameters, vocab ${r.vocabSize}) in ${Date.now() - t0} ms:`);
    for (const k of ['safetensors', 'gguf', 'ckpt', 'diffusers', 'merges']) if (r[k]) console.log(`  ${k}: ${r[k]}`);
  }
}
