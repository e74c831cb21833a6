// A small ControlNet (lllyasviel control_model.* layout) for a tiny model of scripts/make-tiny-model.js: the U-Net's
// encoder under control_model., a hint encoder down to 1/8 and zero convs (golden-adapters.test.ts, server.test.ts).
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const tiny = require(path.join(__dirname, '..', '..', 'scripts', 'make-tiny-model.js')) as {
  listTensors: (o: Record<string, unknown>) => Array<{ name: string; shape: number[] }>;
  writeSafetensors: (file: string, tensors: Array<{ name: string; dtype: string; shape: number[]; data: Buffer }>) => void;
};

/**
 * Writes the ControlNet for the tiny model made with `modelOptions` (listTensors options; {} = the default tiny SD1
 * model). `values`: 'zero' (every weight 0: residuals are 0) or 'random' (seeded, small: the image changes).
 */
export function writeTinyControlNet(file: string, modelOptions: Record<string, unknown> = {}, values: 'zero' | 'random' = 'random'): void {
  let seed = 4242;
  const f32 = (name: string, shape: number[]): { name: string; dtype: string; shape: number[]; data: Buffer } => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Buffer.alloc(4 * n);
    if (values === 'random') {
      const fan = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        data.writeFloatLE(((seed / 2 ** 32 - 0.5) * (shape.length > 1 ? 2 / Math.sqrt(fan) : 0.02)) + (shape.length === 1 && /norm|layers\.0\.weight/.test(name) && name.endsWith('.weight') ? 1 : 0), 4 * i);
      }
    }
    return { name, dtype: 'f32', shape, data };
  };
  const unet = tiny.listTensors(modelOptions).filter((t) => t.name.startsWith('model.diffusion_model.') && !/\.(output_blocks|out)\./.test(t.name));
  const ts = unet.map((t) => f32(t.name.replace('model.diffusion_model.', 'control_model.'), t.shape));
  const out = (n: string): number => unet.find((t) => t.name === `model.diffusion_model.${n}`)!.shape[0];
  const ch = out('input_blocks.0.0.weight');
  const hint = [[16, 3], [16, 16], [32, 16], [32, 32], [96, 32], [96, 96], [256, 96], [ch, 256]];
  hint.forEach(([o, i], k) => ts.push(f32(`control_model.input_hint_block.${2 * k}.weight`, [o, i, 3, 3]), f32(`control_model.input_hint_block.${2 * k}.bias`, [o])));
  for (let i = 0; ; i++) {
    const b = `input_blocks.${i}.`;
    const c = i === 0 ? ch : unet.some((t) => t.name.endsWith(`${b}0.op.weight`)) ? out(`${b}0.op.weight`) : unet.some((t) => t.name.endsWith(`${b}0.out_layers.3.weight`)) ? out(`${b}0.out_layers.3.weight`) : 0;
    if (!c) break;
    ts.push(f32(`control_model.zero_convs.${i}.0.weight`, [c, c, 1, 1]), f32(`control_model.zero_convs.${i}.0.bias`, [c]));
  }
  const m = out('middle_block.2.out_layers.3.weight');
  ts.push(f32('control_model.middle_block_out.0.weight', [m, m, 1, 1]), f32('control_model.middle_block_out.0.bias', [m]));
  tiny.writeSafetensors(file, ts);
}
