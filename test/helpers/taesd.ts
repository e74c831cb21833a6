// A small TAESD file with seeded random weights for tests (controls.test.ts, server.test.ts).
import * as fs from 'fs';

/**
 * Writes a TAESD file with seeded random f32 weights: diffusers AutoencoderTiny names with both halves, or
 * (`original`) the decoder alone under the names of the original taesd_decoder release (index + 1: Clamp is 0).
 */
export function writeTinyTaesd(file: string, original = false): void {
  const shapes: Array<[string, number[]]> = [];
  const conv = (n: string, cin: number, cout: number, bias = true): void => {
    shapes.push([`${n}.weight`, [cout, cin, 3, 3]]);
    if (bias) shapes.push([`${n}.bias`, [cout]]);
  };
  const block = (n: string): void => ['0', '2', '4'].forEach((k) => conv(`${n}.conv.${k}`, 64, 64));
  conv('decoder.layers.0', 4, 64);
  let i = 2;
  for (let s = 0; s < 3; s++) {
    for (let b = 0; b < 3; b++) block(`decoder.layers.${i++}`);
    i++; // Upsample
    conv(`decoder.layers.${i++}`, 64, 64, false);
  }
  block(`decoder.layers.${i++}`);
  conv(`decoder.layers.${i}`, 64, 3);
  conv('encoder.layers.0', 3, 64);
  block('encoder.layers.1');
  i = 2;
  for (let s = 0; s < 3; s++) {
    conv(`encoder.layers.${i++}`, 64, 64, false);
    for (let b = 0; b < 3; b++) block(`encoder.layers.${i++}`);
  }
  conv(`encoder.layers.${i}`, 64, 4);
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const header: Record<string, unknown> = {};
  const bufs: Buffer[] = [];
  let off = 0;
  for (const [name, shape] of shapes) {
    if (original && name.startsWith('encoder.')) continue;
    const outName = original ? name.replace(/^decoder\.layers\.(\d+)\./, (_m, i: string) => `${Number(i) + 1}.`) : name;
    const n = shape.reduce((a, b) => a * b, 1);
    const fan = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const a = new Float32Array(n);
    for (let k = 0; k < n; k++) a[k] = shape.length > 1 ? (rnd() * 3) / Math.sqrt(fan) : name.startsWith('decoder.layers.18') ? 0.5 : 0.01 * rnd();
    bufs.push(Buffer.from(a.buffer));
    header[outName] = { dtype: 'F32', shape, data_offsets: [off, off + n * 4] };
    off += n * 4;
  }
  let h = Buffer.from(JSON.stringify(header));
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, ...bufs]));
}
