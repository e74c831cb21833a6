#!/usr/bin/env node
// Writes a tiny ControlNet with seeded random weights for a tiny model of scripts/make-tiny-model.js (same model
// options: `family` sd1|sd2|sdxl and the widths), for tests. Its encoder has the topology of that model's U-Net
// encoder (input blocks + middle block; SDXL: label_emb, no attention at level 0, transformer depth per level) with
// its own values; the hint encoder goes 3 -> 16 -> 32 -> 96 -> 256 -> unetCh with stride 2 at the 3rd, 5th and 7th
// convolution, as the real ones; the zero convolutions are random (a trained ControlNet's are not zero), values
// n / sqrt(fan_in) times `zeroScale`.
//
// Layouts:
//  diffusers (default): controlnet_cond_embedding.{conv_in, blocks.0-5, conv_out}, conv_in, time_embedding.*,
//    add_embedding.* (SDXL), down_blocks.*, mid_block.*, controlnet_down_blocks.N, controlnet_mid_block (the names of
//    diffusers' ControlNetModel, e.g. diffusers/controlnet-canny-sdxl-1.0).
//  lllyasviel: control_model.{time_embed, label_emb (SDXL), input_blocks, middle_block, input_hint_block.{0,2,..,14},
//    zero_convs.N.0, middle_block_out.0}.
// Both layouts of one seed hold the same values (they are drawn under the LDM-style names).
//
// CLI:    node scripts/make-tiny-controlnet.js OUT.safetensors [--family sd1|sd2|sdxl] [--layout diffusers|lllyasviel]
//           [--dtype f32|f16] [--seed N] [--zero-scale X] [--unet-ch 32] [--clip-hidden 32] [--clip2-hidden 32]
//           [--proj 32]
// Module: makeTinyControlNet({ file, family, layout, dtype, seed, zeroScale, ...model options })
//           -> { file, tensors: [{ name, shape, dtype }], outputs: number of residuals }
'use strict';
const tiny = require('./make-tiny-model.js');

const HINT = [[16, 3], [16, 16], [32, 16], [32, 32], [96, 32], [96, 96], [256, 96]];  // then [unetCh, 256]

function makeTinyControlNet(opts = {}) {
  const { file, layout = 'diffusers', seed = 4321, zeroScale = 1, ...modelOpts } = opts;
  if (!file) throw new Error('file is required');
  if (!['diffusers', 'lllyasviel'].includes(layout)) throw new Error(`layout must be diffusers or lllyasviel, got ${layout}`);
  const o = tiny.resolveOptions(modelOpts);
  const U = 'model.diffusion_model.';
  // the U-Net encoder: everything but the output blocks and the output head
  const enc = tiny.unetTensors(o).filter(([n]) => !n.startsWith(`${U}output_blocks.`) && !n.startsWith(`${U}out.`));
  const shapeOf = (n) => enc.find(([m]) => m === U + n)[1];
  const has = (n) => enc.some(([m]) => m === U + n);
  // canonical (LDM-style, under control_model.) name, shape, and the name written in the chosen layout
  const list = [];
  for (const [n, shape] of enc) {
    const r = n.slice(U.length);
    list.push([`control_model.${r}`, shape, layout === 'lllyasviel' ? `control_model.${r}` : tiny.toDiffusers(n, o)[1]]);
  }
  const hint = [...HINT, [o.unetCh, 256]];
  const hintName = (k) => (k === 0 ? 'conv_in' : k === 7 ? 'conv_out' : `blocks.${k - 1}`);
  hint.forEach(([out, inp], k) => {
    for (const [suffix, shape] of [['weight', [out, inp, 3, 3]], ['bias', [out]]])
      list.push([`control_model.input_hint_block.${2 * k}.${suffix}`, shape,
        layout === 'lllyasviel' ? `control_model.input_hint_block.${2 * k}.${suffix}` : `controlnet_cond_embedding.${hintName(k)}.${suffix}`]);
  });
  // zero convolutions: one per input block (its output channels), then the middle block's
  const chans = [];
  for (let i = 0; ; i++) {
    const b = `input_blocks.${i}.`;
    if (i === 0) chans.push(shapeOf('input_blocks.0.0.weight')[0]);
    else if (has(`${b}0.op.weight`)) chans.push(shapeOf(`${b}0.op.weight`)[0]);
    else if (has(`${b}0.out_layers.3.weight`)) chans.push(shapeOf(`${b}0.out_layers.3.weight`)[0]);
    else break;
  }
  chans.push(shapeOf('middle_block.2.out_layers.3.weight')[0]);
  chans.forEach((c, i) => {
    const mid = i === chans.length - 1;
    const canon = mid ? 'control_model.middle_block_out.0' : `control_model.zero_convs.${i}.0`;
    const diff = mid ? 'controlnet_mid_block' : `controlnet_down_blocks.${i}`;
    for (const [suffix, shape] of [['weight', [c, c, 1, 1]], ['bias', [c]]])
      list.push([`${canon}.${suffix}`, shape, layout === 'lllyasviel' ? `${canon}.${suffix}` : `${diff}.${suffix}`]);
  });
  const tensors = list.map(([canon, shape, name]) => {
    const v = tiny.tensorValues(canon, shape, seed);
    if (/zero_convs|middle_block_out/.test(canon) && shape.length === 4) for (let i = 0; i < v.length; i++) v[i] *= zeroScale;
    return { name, shape, dtype: o.dtype, data: tiny.encodeTensor(v, o.dtype) };
  });
  tiny.writeSafetensors(file, tensors, { 'sdnode.tiny': '1', 'sdnode.family': o.family, 'sdnode.controlnet.layout': layout });
  return { file, tensors: tensors.map(({ name, shape, dtype }) => ({ name, shape, dtype })), outputs: chans.length };
}

module.exports = { makeTinyControlNet };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opts = {};
  const num = (v, f) => { const n = Number(v); if (!Number.isFinite(n)) throw new Error(`${f} needs a number`); return n; };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--family': opts.family = next(); break;
      case '--layout': opts.layout = next(); break;
      case '--dtype': opts.dtype = next(); break;
      case '--seed': opts.seed = num(next(), a); break;
      case '--zero-scale': opts.zeroScale = num(next(), a); break;
      case '--unet-ch': opts.unetCh = num(next(), a); break;
      case '--clip-hidden': opts.clipHidden = num(next(), a); break;
      case '--clip2-hidden': opts.clip2Hidden = num(next(), a); break;
      case '--proj': opts.proj = num(next(), a); break;
      case '-h': case '--help':
        console.log(require('fs').readFileSync(__filename, 'utf8').split('\n').slice(1, 23).join('\n'));
        process.exit(0);
        break;
      default:
        if (a.startsWith('-') || opts.file) { console.error(`unknown argument ${a}`); process.exit(2); }
        opts.file = a;
    }
  }
  if (!opts.file) { console.error('usage: make-tiny-controlnet.js OUT.safetensors [options]'); process.exit(2); }
  const r = makeTinyControlNet(opts);
  console.log(`wrote ${r.tensors.length} tensors (${r.outputs} residuals) to ${r.file}`);
}
