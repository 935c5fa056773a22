#!/usr/bin/env python3
"""Independent reference for tinyseek's tokenizer tests (needs the `regex` module).

  split NAME IN OUT        IN: JSON list of strings; OUT: JSON list of piece lists, split
                           with regex.findall on the named pattern (gpt2 | llama3 | qwen2)
  encode TOKENIZER IN OUT  OUT: JSON list of id lists, encoded with OpenAI's original GPT-2
                           `bpe()` algorithm over a tokenizer.json's vocab/merges/pattern

Written from the published algorithms, not from tinyseek's C++.
"""
import json
import sys

import regex

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}


def bytes_to_unicode():
    # From OpenAI's gpt-2/src/encoder.py.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def get_pairs(word):
    return set(zip(word, word[1:]))


def bpe(token, ranks, cache):
    # OpenAI's Encoder.bpe: merge the lowest-ranked bigram everywhere, repeat.
    if token in cache:
        return cache[token]
    word = tuple(token)
    pairs = get_pairs(word)
    while pairs:
        bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if bigram not in ranks:
            break
        first, second = bigram
        new_word, i = [], 0
        while i < len(word):
            try:
                j = word.index(first, i)
            except ValueError:
                new_word.extend(word[i:])
                break
            new_word.extend(word[i:j])
            i = j
            if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                new_word.append(first + second)
                i += 2
            else:
                new_word.append(word[i])
                i += 1
        word = tuple(new_word)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    cache[token] = word
    return word


def pattern_of(tok):
    pre = tok["pre_tokenizer"]
    if pre["type"] == "ByteLevel":
        return PATTERNS["gpt2"]
    return pre["pretokenizers"][0]["pattern"]["Regex"]


def main():
    cmd = sys.argv[1]
    if cmd == "split":
        texts = json.load(open(sys.argv[3], encoding="utf-8"))
        pat = regex.compile(PATTERNS[sys.argv[2]])
        json.dump([pat.findall(t) for t in texts], open(sys.argv[4], "w", encoding="utf-8"))
    elif cmd == "encode":
        tok = json.load(open(sys.argv[2], encoding="utf-8"))
        vocab = tok["model"]["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tok["model"]["merges"]]
        ranks = {m: r for r, m in enumerate(merges)}
        pat = regex.compile(pattern_of(tok))
        enc = bytes_to_unicode()
        cache = {}
        texts = json.load(open(sys.argv[3], encoding="utf-8"))
        out = []
        for t in texts:
            ids = []
            for piece in pat.findall(t):
                mapped = "".join(enc[b] for b in piece.encode("utf-8"))
                ids.extend(vocab[w] for w in bpe(mapped, ranks, cache))
            out.append(ids)
        json.dump(out, open(sys.argv[4], "w", encoding="utf-8"))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
