#!/usr/bin/env python3
"""Independent reference of one ControlNet forward pass (diffusers layout), in numpy float64, for the tests.

Written from the definition of diffusers' ControlNetModel (not from our engine's code):
  emb  = time_embedding(timestep_proj(t))  (sinusoidal, cos half first, max period 10000)
       + add_embedding(y)                  (SDXL: y = pooled text embedding ++ size/crop embeddings, given as is)
  h    = conv_in(x) + controlnet_cond_embedding(image)   (8 convs, SiLU between, stride 2 at blocks.1/3/5)
  down blocks: [resnet (+ Transformer2D)] x layers, then the downsampler; every output kept
  mid block:   resnet, Transformer2D (if present), resnet
  residual k = controlnet_down_blocks.k(kept k) * strength; last = controlnet_mid_block(mid) * strength
ResnetBlock2D: GroupNorm(32, eps 1e-5), SiLU, conv3x3, + time_emb_proj(SiLU(emb)), GroupNorm, SiLU, conv3x3,
  + shortcut (1x1 conv when the widths differ). Transformer2D: GroupNorm(32, eps 1e-6), proj_in (1x1 conv or Linear
  by the weight's rank), blocks of [LayerNorm, self-attention, LayerNorm, cross-attention, LayerNorm, GEGLU
  feed-forward (exact GELU)] with residuals, proj_out, + input.

usage: controlnet_reference.py CONTROLNET.safetensors INPUTS.safetensors OUT.safetensors
           (--heads N | --head-dim N) [--strength S]
INPUTS holds x [B,4,h,w], t [B], context [B,T,D], image [1,3,8h,8w] and, for SDXL, y [B,adm] (F32).
OUT receives residual_0 .. residual_N (F32) and hint (the conditioning embedding's output).
"""
import argparse
import json
import math
import struct
import sys

import numpy as np

DT = {'F32': np.float32, 'F16': np.float16, 'F64': np.float64, 'BF16': None}


def read_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        a, b = v['data_offsets']
        if v['dtype'] == 'BF16':
            u = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=DT[v['dtype']])
        out[k] = arr.astype(np.float64).reshape(v['shape'])
    return out


def write_st(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, v in tensors.items():
        b = np.ascontiguousarray(v, dtype=np.float32).tobytes()
        hdr[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Net:
    def __init__(self, w, heads, head_dim):
        self.w = w
        self.heads = heads
        self.head_dim = head_dim

    def has(self, n):
        return n in self.w

    def conv(self, p, x, stride=1, pad=None):
        wt, b = self.w[p + '.weight'], self.w.get(p + '.bias')
        k = wt.shape[2]
        if pad is None:
            pad = k // 2
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
        y = np.einsum('bchwij,ocij->bohw', win, wt, optimize=True)
        if b is not None:
            y = y + b[None, :, None, None]
        return y

    def linear(self, p, x):
        y = x @ self.w[p + '.weight'].T
        if p + '.bias' in self.w:
            y = y + self.w[p + '.bias']
        return y

    def group_norm(self, p, x, eps, groups=32):
        B, C = x.shape[:2]
        g = x.reshape(B, groups, -1)
        m = g.mean(-1, keepdims=True)
        v = ((g - m) ** 2).mean(-1, keepdims=True)
        y = ((g - m) / np.sqrt(v + eps)).reshape(x.shape)
        return y * self.w[p + '.weight'][None, :, None, None] + self.w[p + '.bias'][None, :, None, None]

    def layer_norm(self, p, x, eps=1e-5):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * self.w[p + '.weight'] + self.w[p + '.bias']

    def resnet(self, p, x, emb):
        h = self.conv(p + '.conv1', silu(self.group_norm(p + '.norm1', x, 1e-5)))
        h = h + self.linear(p + '.time_emb_proj', silu(emb))[:, :, None, None]
        h = self.conv(p + '.conv2', silu(self.group_norm(p + '.norm2', h, 1e-5)))
        s = self.conv(p + '.conv_shortcut', x, 1, 0) if self.has(p + '.conv_shortcut.weight') else x
        return s + h

    def attention(self, p, x, ctx):
        q = self.linear(p + '.to_q', x)
        k = self.linear(p + '.to_k', ctx)
        v = self.linear(p + '.to_v', ctx)
        B, N, C = q.shape
        nh = self.heads if self.heads > 0 else C // self.head_dim
        d = C // nh
        q = q.reshape(B, N, nh, d).transpose(0, 2, 1, 3)
        k = k.reshape(B, -1, nh, d).transpose(0, 2, 1, 3)
        v = v.reshape(B, -1, nh, d).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = (s @ v).transpose(0, 2, 1, 3).reshape(B, N, C)
        return self.linear(p + '.to_out.0', o)

    def transformer(self, p, x, ctx):
        B, C, H, W = x.shape
        h = self.group_norm(p + '.norm', x, 1e-6)
        conv_proj = self.w[p + '.proj_in.weight'].ndim == 4
        if conv_proj:
            h = self.conv(p + '.proj_in', h, 1, 0)
        h = h.reshape(B, C, H * W).transpose(0, 2, 1)
        if not conv_proj:
            h = self.linear(p + '.proj_in', h)
        d = 0
        while self.has(f'{p}.transformer_blocks.{d}.norm1.weight'):
            tb = f'{p}.transformer_blocks.{d}'
            n = self.layer_norm(tb + '.norm1', h)
            h = h + self.attention(tb + '.attn1', n, n)
            h = h + self.attention(tb + '.attn2', self.layer_norm(tb + '.norm2', h), ctx)
            f = self.linear(tb + '.ff.net.0.proj', self.layer_norm(tb + '.norm3', h))
            hidden, gate = np.split(f, 2, axis=-1)
            h = h + self.linear(tb + '.ff.net.2', hidden * gelu(gate))
            d += 1
        if not conv_proj:
            h = self.linear(p + '.proj_out', h)
        h = h.transpose(0, 2, 1).reshape(B, C, H, W)
        if conv_proj:
            h = self.conv(p + '.proj_out', h, 1, 0)
        return h + x


def silu(x):
    return x / (1.0 + np.exp(-x))


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    a = t[:, None] * freqs[None, :]
    return np.concatenate([np.cos(a), np.sin(a)], axis=1)  # flip_sin_to_cos=True


def forward(net, x, t, ctx, image, y, strength):
    ch = net.w['conv_in.weight'].shape[0]
    emb = net.linear('time_embedding.linear_2', silu(net.linear('time_embedding.linear_1', timestep_embedding(t, ch))))
    if net.has('add_embedding.linear_1.weight'):
        if y is None:
            raise SystemExit('this ControlNet has add_embedding: INPUTS needs y')
        emb = emb + net.linear('add_embedding.linear_2', silu(net.linear('add_embedding.linear_1', y)))
    # conditioning embedding
    c = silu(net.conv('controlnet_cond_embedding.conv_in', image))
    for k in range(6):
        c = silu(net.conv(f'controlnet_cond_embedding.blocks.{k}', c, 2 if k % 2 == 1 else 1))
    hint = net.conv('controlnet_cond_embedding.conv_out', c)
    h = net.conv('conv_in', x) + hint
    kept = [h]
    i = 0
    while net.has(f'down_blocks.{i}.resnets.0.conv1.weight'):
        j = 0
        while net.has(f'down_blocks.{i}.resnets.{j}.conv1.weight'):
            h = net.resnet(f'down_blocks.{i}.resnets.{j}', h, emb)
            if net.has(f'down_blocks.{i}.attentions.{j}.norm.weight'):
                h = net.transformer(f'down_blocks.{i}.attentions.{j}', h, ctx)
            kept.append(h)
            j += 1
        if net.has(f'down_blocks.{i}.downsamplers.0.conv.weight'):
            h = net.conv(f'down_blocks.{i}.downsamplers.0.conv', h, 2, 1)
            kept.append(h)
        i += 1
    h = net.resnet('mid_block.resnets.0', h, emb)
    if net.has('mid_block.attentions.0.norm.weight'):
        h = net.transformer('mid_block.attentions.0', h, ctx)
    h = net.resnet('mid_block.resnets.1', h, emb)
    out = {f'residual_{k}': net.conv(f'controlnet_down_blocks.{k}', s, 1, 0) * strength for k, s in enumerate(kept)}
    out[f'residual_{len(kept)}'] = net.conv('controlnet_mid_block', h, 1, 0) * strength
    out['hint'] = hint
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('controlnet')
    ap.add_argument('inputs')
    ap.add_argument('out')
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--heads', type=int)
    g.add_argument('--head-dim', type=int)
    ap.add_argument('--strength', type=float, default=1.0)
    a = ap.parse_args()
    w = read_st(a.controlnet)
    if 'controlnet_cond_embedding.conv_in.weight' not in w:
        sys.exit(f'{a.controlnet}: not a diffusers-layout ControlNet')
    inp = read_st(a.inputs)
    net = Net(w, a.heads or 0, a.head_dim or 0)
    out = forward(net, inp['x'], inp['t'], inp['context'], inp['image'], inp.get('y'), a.strength)
    write_st(a.out, out)


if __name__ == '__main__':
    main()
