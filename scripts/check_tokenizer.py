#!/usr/bin/env python3
"""Differential check of sdnode's CLIP tokenizer and A1111 prompt chunking against independent Python versions.

  python3 scripts/check_tokenizer.py [SEED] [COUNT]

Needs: build/bin/sdn_tokenize (npm run build:native), the CLIP merges at ../shared/data/clip-bpe-merges.txt.gz
(or $SDNODE_SHARED_DIR/data/...), and the Python `regex` package (for \\p{L} / \\p{N}). The references follow
OpenAI CLIP's SimpleTokenizer without ftfy (html.unescape twice, whitespace collapse, str.lower(), the
pre-tokenisation regex, per-word BPE) and A1111's parse_prompt_attention + 75-token chunking with comma
backtracking. Random texts mix ASCII, Latin/Greek/Cyrillic/CJK/kana/Hangul, emoji, digits of several scripts,
odd whitespace and HTML references; random prompts mix emphasis brackets, weights, escapes, BREAK and commas.
Known difference: code points newer than Python's unicodedata (used for the engine's tables) may classify
differently from the `regex` package's newer Unicode data.
"""
import gzip
import html
import os
import random
import re as stdre
import subprocess
import sys

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SDNODE_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
TOOL = os.path.join(ROOT, "build", "bin", "sdn_tokenize")

text = gzip.open(os.path.join(SHARED, "data", "clip-bpe-merges.txt.gz"), "rt", encoding="utf-8").read()
MERGES_PATH = os.path.join(ROOT, "build", "clip-merges.txt")
with open(MERGES_PATH, "w", encoding="utf-8") as f:
    f.write(text)
merges = [tuple(m.split()) for m in text.split("\n")[1:48895]]


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BU = bytes_to_unicode()
vocab = list(BU.values())
vocab += [v + "</w>" for v in vocab]
vocab += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
ENC = {v: i for i, v in enumerate(vocab)}
RANKS = {m: i for i, m in enumerate(merges)}
CACHE = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                    regex.IGNORECASE)


def bpe(token):
    if token in CACHE:
        return CACHE[token]
    word = tuple(token[:-1]) + (token[-1] + "</w>",)
    while len(word) > 1:
        pairs = set(zip(word, word[1:]))
        best = min(pairs, key=lambda p: RANKS.get(p, float("inf")))
        if best not in RANKS:
            break
        a, b = best
        new, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                new.append(a + b)
                i += 2
            else:
                new.append(word[i])
                i += 1
        word = tuple(new)
    CACHE[token] = " ".join(word)
    return CACHE[token]


def encode(t):
    t = html.unescape(html.unescape(t)).strip()
    t = stdre.sub(r"\s+", " ", t).strip().lower()
    ids = []
    for w in PAT.findall(t):
        ids.extend(ENC[x] for x in bpe("".join(BU[b] for b in w.encode("utf-8"))).split(" "))
    return ids


RE_ATTENTION = stdre.compile(r"""\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:""")
RE_BREAK = stdre.compile(r"\s*\bBREAK\b\s*", stdre.S)


def parse_attention(t):
    res, rb, sb = [], [], []

    def mul(start, m):
        for p in range(start, len(res)):
            res[p][1] *= m

    for m in RE_ATTENTION.finditer(t):
        s, w = m.group(0), m.group(1)
        if s.startswith("\\"):
            res.append([s[1:], 1.0])
        elif s == "(":
            rb.append(len(res))
        elif s == "[":
            sb.append(len(res))
        elif w is not None and rb:
            mul(rb.pop(), float(w))
        elif s == ")" and rb:
            mul(rb.pop(), 1.1)
        elif s == "]" and sb:
            mul(sb.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(RE_BREAK.split(s)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for p in rb:
        mul(p, 1.1)
    for p in sb:
        mul(p, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def chunks(segs, L=75, backtrack=20, comma=267, bos=49406, eos=49407):
    out, chunk, mult, last_comma = [], [], [], -1

    def close():
        nonlocal chunk, mult, last_comma
        pad = L - len(chunk)
        out.append(([bos] + chunk + [eos] * pad + [eos], [1.0] + mult + [1.0] * pad + [1.0]))
        chunk, mult, last_comma = [], [], -1

    for t, w in segs:
        if t == "BREAK" and w == -1:
            close()
            continue
        for tok in encode(t):
            if tok == comma:
                last_comma = len(chunk)
            elif len(chunk) == L and last_comma != -1 and len(chunk) - last_comma <= backtrack:
                cut = last_comma + 1
                ids, ws = chunk[cut:], mult[cut:]
                chunk, mult = chunk[:cut], mult[:cut]
                close()
                chunk, mult = ids, ws
            if len(chunk) == L:
                close()
            chunk.append(tok)
            mult.append(w)
    if chunk or not out:
        close()
    return out


def fmt_chunks(out):
    import struct
    ids, ws = [], []
    for a, b in out:
        ids += a
        ws += b
    f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
    return "%d|" % len(out) + " ".join("%d:%s" % (i, "%g" % f32(w)) for i, w in zip(ids, ws))


def run_tool(lines, *args):
    inp = "\n".join(lines) + "\n"
    r = subprocess.run([TOOL, MERGES_PATH, *args], input=inp.encode("utf-8"), capture_output=True, check=True)
    return r.stdout.decode("utf-8").split("\n")


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rnd = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t ,.!?'\"()[]:;-_&#@/\\<>|",
             "éèêëàâäôöûüçñÅÆØßœŒİıſǅΣσςΑαЖжЁё", "猫犬日本語中文한국어こんにちはカタカナ", "🦊😀👍🏽❤️✨", "²³½١٢٣Ⅷ①",
             "\u00a0\u3000\u2028\u200b\u0301\u0308\ufeff"]
    ents = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x41;", "&eacute;", "&nbsp;", "&copy;", "&notit;", "&#128;",
            "&#0;", "&amp;amp;", "&#x1F98A;", "&Aacute", "&fjlig;", "&bogus;", "&#", "&#x;"]
    texts = []
    for _ in range(count):
        s = ""
        for _ in range(rnd.randint(0, 12)):
            if rnd.random() < 0.1:
                s += rnd.choice(ents)
            else:
                p = rnd.choice(pools)
                s += "".join(rnd.choice(p) for _ in range(rnd.randint(1, 6)))
            if rnd.random() < 0.5:
                s += " "
        texts.append(s)
    bad = 0
    for t, got in zip(texts, run_tool(texts)):
        want = "[" + ",".join(map(str, encode(t))) + "]"
        if want != got:
            bad += 1
            if bad <= 5:
                print("encode MISMATCH", repr(t), "\n  want", want, "\n  got ", got)
    print("encode: %d texts, %d mismatches" % (len(texts), bad))

    words = ["cat", "dog", "red", "fox", "masterpiece", "best quality", ",", ", ", " , ", "BREAK", " BREAK ", "(", ")",
             "[", "]", ":1.3)", ":0.5)", ": 2 )", "\\(", "\\)", "\\\\", "\\", "forest", "1girl", "snow"]
    prompts = ["".join(rnd.choice(words) + (" " if rnd.random() < 0.6 else "") for _ in range(rnd.choice([3, 10, 40, 90, 160])))
               for _ in range(count // 2)]
    bad2 = 0
    for p, got in zip(prompts, run_tool(prompts, "--prompt")):
        want = fmt_chunks(chunks(parse_attention(p)))
        if want != got:
            bad2 += 1
            if bad2 <= 5:
                print("prompt MISMATCH", repr(p), "\n  want", want[:300], "\n  got ", got[:300])
    print("tokenize_prompt: %d prompts, %d mismatches" % (len(prompts), bad2))
    return 1 if bad or bad2 else 0


if __name__ == "__main__":
    sys.exit(main())
