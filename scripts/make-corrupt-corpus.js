#!/usr/bin/env node
// Writes truncated / corrupt / hostile model files for error-handling tests, plus manifest.json listing, for each,
// the error code the engine must raise and a word its message must contain. (The native test
// formats.*_corrupt_corpus checks the same cases in C++; this corpus lets JS tests check the typed errors that
// reach JavaScript.)
//   node scripts/make-corrupt-corpus.js OUT_DIR
// Module: require('./scripts/make-corrupt-corpus.js').makeCorruptCorpus(outDir) -> [{ file, code, message }]
'use strict';
const fs = require('fs');
const path = require('path');

const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const gstr = (s) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
function st(headerObjOrText, data = Buffer.alloc(16)) {
  let h = Buffer.from(typeof headerObjOrText === 'string' ? headerObjOrText : JSON.stringify(headerObjOrText));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  return Buffer.concat([u64(h.length), h, data]);
}
function gguf({ version = 3, kv = [], tensors = [], data = Buffer.alloc(32) } = {}) {
  const head = [Buffer.from('GGUF'), u32(version), u64(tensors.length), u64(kv.length), ...kv];
  for (const [name, ne, type, off] of tensors) head.push(gstr(name), u32(ne.length), ...ne.map(u64), u32(type), u64(off));
  let h = Buffer.concat(head);
  h = Buffer.concat([h, Buffer.alloc((32 - (h.length % 32)) % 32)]);
  return Buffer.concat([h, data]);
}
const T = (shape, offsets, dtype = 'F32') => ({ w: { dtype, shape, data_offsets: offsets } });

function cases() {
  const good = st(T([2, 2], [0, 16]));
  const goodG = gguf({ tensors: [['w', [4], 0, 0]] });
  return [
    ['st-truncated-length.safetensors', Buffer.from('abc'), 'InvalidFile', 'truncated'],
    ['st-huge-header.safetensors', Buffer.concat([u64(2 ** 40), Buffer.from('{}')]), 'InvalidFile', '100 MB'],
    ['st-header-past-end.safetensors', Buffer.concat([u64(5000), Buffer.from('{"a":1}')]), 'InvalidFile', 'past the end'],
    ['st-bad-json.safetensors', st('{"w":{"dtype":"F32",'), 'InvalidFile', 'invalid JSON'],
    ['st-offsets-past-end.safetensors', st(T([8], [0, 32])), 'InvalidFile', 'past the end'],
    ['st-truncated-data.safetensors', good.subarray(0, good.length - 4), 'InvalidFile', 'past the end'],
    ['st-overlap.safetensors', st({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), 'InvalidFile', 'overlap'],
    ['st-wrong-length.safetensors', st(T([3], [0, 16])), 'InvalidFile', 'byte length'],
    ['st-dims-overflow.safetensors', st('{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}'), 'InvalidFile', 'overflow'],
    ['st-unknown-dtype.safetensors', st(T([4], [0, 16], 'F128')), 'InvalidFile', 'unknown dtype'],
    ['st-five-dims.safetensors', st(T([1, 1, 1, 1, 4], [0, 16])), 'InvalidFile', 'dimensions'],
    ['st-duplicate.safetensors', st('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'), 'InvalidFile', 'duplicate'],
    ['gguf-bad-magic.gguf', Buffer.concat([Buffer.from('GGUX'), goodG.subarray(4)]), 'InvalidFile', 'not a recognised model file'],
    ['gguf-version-1.gguf', gguf({ version: 1 }), 'InvalidFile', 'version 1'],
    ['gguf-truncated-header.gguf', goodG.subarray(0, 10), 'InvalidFile', 'truncated'],
    ['gguf-string-past-eof.gguf', Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), u64(2 ** 50), Buffer.alloc(40, 97)]), 'InvalidFile', 'string length'],
    ['gguf-ndims-5.gguf', gguf({ tensors: [['w', [1, 1, 1, 1, 4], 0, 0]] }), 'InvalidFile', 'n_dims 5'],
    ['gguf-unknown-type.gguf', gguf({ tensors: [['w', [4], 77, 0]] }), 'InvalidFile', 'type id 77'],
    ['gguf-offset-past-end.gguf', gguf({ tensors: [['w', [4], 0, 64]] }), 'InvalidFile', 'past the end'],
    ['gguf-unaligned.gguf', gguf({ tensors: [['w', [4], 0, 4]] }), 'InvalidFile', 'alignment'],
    ['gguf-dims-overflow.gguf', gguf({ tensors: [['w', [2 ** 32, 2 ** 32, 2 ** 32], 0, 0]] }), 'InvalidFile', 'overflow'],
    ['gguf-bool-2.gguf', gguf({ kv: [Buffer.concat([gstr('flag'), u32(7), Buffer.from([2])])] }), 'InvalidFile', 'BOOL'],
    ['ckpt-not-zip.ckpt', Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(100)]), 'InvalidFile', 'zip'],
    ['ckpt-legacy.ckpt', Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]), 'Unsupported', 'safetensors'],
    ['not-a-model.bin', Buffer.from('hello, this is text'), 'InvalidFile', 'not a PyTorch zip checkpoint'],
    ['empty.safetensors', Buffer.alloc(0), 'InvalidFile', 'truncated'],
  ];
}

function makeCorruptCorpus(outDir) {
  fs.mkdirSync(outDir, { recursive: true });
  const manifest = cases().map(([file, bytes, code, message]) => {
    fs.writeFileSync(path.join(outDir, file), bytes);
    return { file, code, message };
  });
  fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

module.exports = { makeCorruptCorpus };

if (require.main === module) {
  const out = process.argv[2];
  if (!out) { console.error('usage: make-corrupt-corpus.js OUT_DIR'); process.exit(2); }
  console.log(`wrote ${makeCorruptCorpus(out).length} corrupt files and manifest.json to ${out}`);
}
