"""Train the byte-level BPE tokenizer of the shipped models with the tokenizers library, and encode
the data splits with it.

GPT-2's scheme: GPT-2's pre-token split and byte alphabet ("Ġthe"), merges learned by frequency
on the train split. Ids: the 256 byte symbols first (in the library's order, by character), then
one id per merge in learned order, and <|endoftext|> last (id vocab - 1), as the shipped
tokenizer.json files have it. The training is deterministic: the same text gives the same merges.

Usage:
  .venv/bin/python export/train/train_tokenizer.py --vocab 4096 --data data --out data/tokenizer.json
trains, writes tokenizer.json and encodes each split to data/{split}.ids.npy (uint16; documents
joined by <|endoftext|>, one also in front).
  .venv/bin/python export/train/train_tokenizer.py --data data --tokenizer models/brown-sedd-small/tokenizer.json
encodes the splits with an existing tokenizer instead (to continue training a shipped model,
whose tokenizer an older trainer made: the merges learned today differ from it).
"""

import argparse
import os
import shutil
import time

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers, trainers

import common  # noqa: F401  (puts export/ on sys.path)
from seddpy.tokenizers import EOT, add_special, byte_level_bpe


def train(texts, vocab_size):
    """A tokenizers.Tokenizer with vocab_size ids: 256 bytes, vocab_size - 257 merges learned
    from texts (fewer when the texts run out of pairs), and <|endoftext|> as the last id."""
    tok = byte_level_bpe()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    add_special(tok, EOT)
    return tok


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d.strip("\n") for d in text.split("\n" + EOT + "\n")]


def encode_docs(tok, docs):
    """Documents joined by <|endoftext|>, one also in front, as a uint16 array."""
    eot = tok.token_to_id(EOT)
    ids = [eot]
    for enc in tok.encode_batch(docs):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="data/tokenizer.json")
    ap.add_argument("--tokenizer", help="encode with this tokenizer.json (copied to --out) instead of training one")
    args = ap.parse_args()
    if args.vocab > 65536:
        ap.error("--vocab must be at most 65536: the splits are stored as uint16")
    t0 = time.time()
    train_docs = read_docs(os.path.join(args.data, "train.txt"))
    if args.tokenizer:
        tok = Tokenizer.from_file(args.tokenizer)
        if tok.token_to_id(EOT) is None or tok.get_vocab_size() > 65536:
            ap.error(f"--tokenizer {args.tokenizer}: needs {EOT} and at most 65536 ids")
        print(f"encoding with {args.tokenizer}: vocabulary {tok.get_vocab_size()} (<|endoftext|> = {tok.token_to_id(EOT)})")
    else:
        tok = train(train_docs, args.vocab)
        print(f"trained vocabulary {tok.get_vocab_size()} (<|endoftext|> = {tok.token_to_id(EOT)}), {time.time() - t0:.1f}s")
    if not args.tokenizer:
        tok.save(args.out, pretty=False)
    elif not (os.path.exists(args.out) and os.path.samefile(args.tokenizer, args.out)):
        # the file itself, byte for byte: its sha256 is what a model's sedd.json names
        shutil.copyfile(args.tokenizer, args.out)
    for split in ("train", "valid", "test"):
        t1 = time.time()
        docs = train_docs if split == "train" else read_docs(os.path.join(args.data, split + ".txt"))
        ids = encode_docs(tok, docs)
        np.save(os.path.join(args.data, split + ".ids.npy"), ids)
        nbytes = sum(len(d.encode()) for d in docs)
        bad = sum(tok.decode(e.ids) != d for e, d in zip(tok.encode_batch(docs), docs))
        print(f"{split}: {len(docs)} docs, {len(ids)} tokens, {nbytes / len(ids):.2f} bytes/token, "
              f"round-trip failures {bad}, {time.time() - t1:.1f}s")


if __name__ == "__main__":
    main()
