// A minimal, independent PNG chunk reader for tests (does not share code with lib/image.ts).
import * as zlib from 'zlib';

export interface PngChunk {
  type: string;
  data: Buffer;
  crcOk: boolean;
}

const table: number[] = [];
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (0xedb88320 ^ (c >>> 1)) >>> 0 : c >>> 1;
  table.push(c >>> 0);
}
function crc(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = (table[(c ^ b) & 0xff] ^ (c >>> 8)) >>> 0;
  return (c ^ 0xffffffff) >>> 0;
}

export function readChunks(png: Buffer): PngChunk[] {
  if (png.readUInt32BE(0) !== 0x89504e47 || png.readUInt32BE(4) !== 0x0d0a1a0a) throw new Error('not a PNG');
  const out: PngChunk[] = [];
  let off = 8;
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('ascii', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    const stored = png.readUInt32BE(off + 8 + len);
    out.push({ type, data, crcOk: crc(png.subarray(off + 4, off + 8 + len)) === stored });
    off += 12 + len;
    if (type === 'IEND') break;
  }
  return out;
}

/** keyword -> text of every tEXt, zTXt and iTXt chunk. */
export function readText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of readChunks(png)) {
    if (c.type === 'tEXt') {
      const z = c.data.indexOf(0);
      out[c.data.toString('latin1', 0, z)] = c.data.toString('latin1', z + 1);
    } else if (c.type === 'zTXt') {
      const z = c.data.indexOf(0);
      out[c.data.toString('latin1', 0, z)] = zlib.inflateSync(c.data.subarray(z + 2)).toString('latin1');
    } else if (c.type === 'iTXt') {
      const z = c.data.indexOf(0);
      const key = c.data.toString('latin1', 0, z);
      const compressed = c.data[z + 1] === 1;
      let p = z + 3;
      p = c.data.indexOf(0, p) + 1; // language tag
      p = c.data.indexOf(0, p) + 1; // translated keyword
      const body = c.data.subarray(p);
      out[key] = (compressed ? zlib.inflateSync(body) : body).toString('utf8');
    }
  }
  return out;
}
