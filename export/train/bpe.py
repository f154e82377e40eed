"""A deterministic byte-level BPE trainer and encoder (GPT-2 style), written for this project.

Text is split into pre-tokens with a pattern equivalent to GPT-2's for the characters in our
data (letters, digits and other symbols each form runs, a run may carry one leading space), each
pre-token is mapped to bytes and the bytes to GPT-2's printable byte alphabet ("Ġthe"), and merges
are learned greedily by frequency over the train split. Ties go to the pair of smallest ids, so the
same text always gives the same merges.

Token ids: 0–255 are the single bytes (id = byte value), then one id per merge in learned order,
and the last id is <|endoftext|>. The result is written as a HuggingFace tokenizer.json (BPE model,
ByteLevel pre-tokenizer and decoder) that github.com/sugarme/tokenizer loads.

Usage:
  python3 export/train/bpe.py --vocab 4096 --data data --out data/tokenizer.json
trains, writes tokenizer.json and encodes each split to data/{split}.ids.npy (uint16; documents
joined by <|endoftext|>).
"""

import argparse
import heapq
import json
import os
import re
import time
from collections import Counter

import numpy as np

EOT = "<|endoftext|>"

# GPT-2's pattern with \p{L} written as [^\W\d_] and \p{N} as \d (Python's re has no \p classes).
PRETOKEN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")



def merge_pair(syms, a, b, new_id):
    """syms with every non-overlapping adjacent (a, b), left to right, replaced by new_id."""
    out = []
    i = 0
    while i < len(syms):
        if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(syms[i])
            i += 1
    return out

def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = bytes_to_unicode()


def pretokenize(text):
    return PRETOKEN.findall(text)


def train(texts, vocab_size):
    """Learn vocab_size - 257 merges; returns the merges as (left id, right id) pairs."""
    counts = Counter()
    for t in texts:
        counts.update(pretokenize(t))
    words = [list(w.encode("utf-8")) for w in counts]
    freq = list(counts.values())
    pair_count = Counter()
    where = {}
    for wi, (syms, f) in enumerate(zip(words, freq)):
        for p in zip(syms, syms[1:]):
            pair_count[p] += f
            where.setdefault(p, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    n_merges = vocab_size - 257
    while len(merges) < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc or negc == 0:
            continue  # stale entry
        new_id = 256 + len(merges)
        merges.append(pair)
        a, b = pair
        touched = Counter()
        for wi in sorted(where.pop(pair, ())):
            syms, f = words[wi], freq[wi]
            for p in zip(syms, syms[1:]):
                pair_count[p] -= f
                touched[p] += 1
            out = merge_pair(syms, a, b, new_id)
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                touched[p] += 1
                where.setdefault(p, set()).add(wi)
        pair_count.pop(pair, None)
        for p in touched:
            c = pair_count.get(p, 0)
            if c > 0 and p != pair:
                heapq.heappush(heap, (-c, p))
            elif c <= 0:
                pair_count.pop(p, None)
    return merges


class Tokenizer:
    """Encodes text with learned merges; pre-token results are cached."""

    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(self.merges)}
        self.eot = 256 + len(self.merges)
        self.vocab_size = self.eot + 1
        self.strings = [BYTE_TO_CHAR[b] for b in range(256)]
        self.bytes = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self.strings.append(self.strings[a] + self.strings[b])
            self.bytes.append(self.bytes[a] + self.bytes[b])
        self.cache = {}

    @classmethod
    def from_file(cls, path):
        """Loads the merges back from a tokenizer.json written by save()."""
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = tj["model"]["vocab"]
        merges = []
        for m in tj["model"]["merges"]:
            left, right = m.split(" ")
            merges.append((vocab[left], vocab[right]))
        return cls(merges)

    def encode_word(self, w):
        ids = self.cache.get(w)
        if ids is not None:
            return ids
        syms = list(w.encode("utf-8"))
        rank = self.rank
        while len(syms) > 1:
            best, bi = None, -1
            for i in range(len(syms) - 1):
                r = rank.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            a, b = self.merges[best]
            new_id = 256 + best
            syms = merge_pair(syms, a, b, new_id)
        self.cache[w] = syms
        return syms

    def encode(self, text):
        ids = []
        for w in pretokenize(text):
            ids.extend(self.encode_word(w))
        return ids

    def decode(self, ids):
        return b"".join(self.bytes[i] if i != self.eot else EOT.encode() for i in ids).decode("utf-8", errors="replace")

    def to_json(self):
        vocab = {s: i for i, s in enumerate(self.strings)}
        if len(vocab) != len(self.strings):
            raise ValueError("two merges produced the same token string")
        vocab[EOT] = self.eot
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": self.eot, "content": EOT, "single_word": False, "lstrip": False,
                 "rstrip": False, "normalized": False, "special": True}
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE",
                "vocab": vocab,
                "merges": [self.strings[a] + " " + self.strings[b] for a, b in self.merges],
            },
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=None, separators=(",", ":"))
            f.write("\n")


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d.strip("\n") for d in text.split("\n" + EOT + "\n")]


def encode_docs(tok, docs):
    """Documents joined by <|endoftext|>, one also in front, as a uint16 array."""
    ids = [tok.eot]
    for d in docs:
        ids.extend(tok.encode(d))
        ids.append(tok.eot)
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="data/tokenizer.json")
    args = ap.parse_args()
    t0 = time.time()
    train_docs = read_docs(os.path.join(args.data, "train.txt"))
    merges = train(train_docs, args.vocab)
    tok = Tokenizer(merges)
    tok.save(args.out)
    print(f"trained {len(merges)} merges, vocabulary {tok.vocab_size}, {time.time() - t0:.1f}s")
    for split in ("train", "valid", "test"):
        t1 = time.time()
        docs = train_docs if split == "train" else read_docs(os.path.join(args.data, split + ".txt"))
        ids = encode_docs(tok, docs)
        np.save(os.path.join(args.data, split + ".ids.npy"), ids)
        nbytes = sum(len(d.encode()) for d in docs)
        bad = sum(tok.decode(tok.encode(d)) != d for d in docs)
        print(f"{split}: {len(docs)} docs, {len(ids)} tokens, {nbytes / len(ids):.2f} bytes/token, "
              f"round-trip failures {bad}, {time.time() - t1:.1f}s")


if __name__ == "__main__":
    main()
