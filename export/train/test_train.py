"""Tests for the training code: run with `.venv/bin/python -m pytest export/train/test_train.py`."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import common  # noqa: F401
import data
import export as export_cli
import train_tokenizer
from seddpy import checkpoints, tokenizers
from seddpy.model import SEDD
from train_ar import CausalLM
from train_sedd import loglinear, masked_log_score, perturb, sedd_loss

CFG = {"tokens": 50, "graph": {"type": "absorb"},
       "model": {"hidden_size": 32, "cond_dim": 16, "n_blocks": 2, "n_heads": 2, "scale_by_sigma": True}}


def random_sedd(seed=0, std=0.3):
    torch.manual_seed(seed)
    m = SEDD(CFG)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    return m


def test_masked_log_score_matches_forward():
    m = random_sedd()
    x = torch.randint(0, 51, (3, 20))
    sigma = torch.tensor([0.01, 0.7, 4.0])
    s, masked, rows = masked_log_score(m, x, sigma, 50)
    full = m(x, sigma)[masked]
    assert s.shape == full.shape
    assert torch.allclose(s, full, atol=1e-5, rtol=1e-5)
    assert rows.tolist() == masked.nonzero()[:, 0].tolist()


def test_masked_log_score_matches_forward_time_independent():
    """--time-independent: the training path holds the time input at 0 like SEDD.forward."""
    cfg = {**CFG, "model": {**CFG["model"], "time_independent": True}}
    torch.manual_seed(2)
    m = SEDD(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    x = torch.randint(0, 51, (3, 20))
    sigma = torch.tensor([0.01, 0.7, 4.0])
    s, masked, _ = masked_log_score(m, x, sigma, 50)
    assert torch.allclose(s, m(x, sigma)[masked], atol=1e-5, rtol=1e-5)
    # and σ moves every masked row by the scale_by_sigma term only
    s2, _, _ = masked_log_score(m, x, sigma * 2, 50)
    shift = (torch.log(torch.expm1(sigma)) - torch.log(torch.expm1(sigma * 2)))[masked.nonzero()[:, 0]]
    assert torch.allclose((s2 - s)[:, :50], shift[:, None].expand(-1, 50), atol=1e-4)


def test_sedd_loss_matches_direct_sum():
    """The per-sequence loss equals σ'(t) Σ_i ℓ_i written out position by position."""
    m = random_sedd(1)
    x0 = torch.randint(0, 50, (3, 20))
    t = torch.tensor([0.2, 0.6, 0.95])
    got = sedd_loss(m, x0, 50, t=t, gen=torch.Generator().manual_seed(5))
    sigma, dsigma = loglinear(t)
    xt = perturb(x0, sigma, 50, torch.Generator().manual_seed(5))
    full = m(xt, sigma).double()
    want = torch.zeros(3, dtype=torch.float64)
    for b in range(3):
        r = 1.0 / math.expm1(float(sigma[b]))
        for i in range(20):
            if xt[b, i] == 50:
                s = full[b, i]
                want[b] += float(dsigma[b]) * (s[:50].exp().sum() - r * s[x0[b, i]] + r * (math.log(r) - 1))
    assert torch.allclose(got.double(), want, rtol=1e-5)


def test_sedd_loss_is_zero_without_masks():
    m = random_sedd(2)
    x0 = torch.randint(0, 50, (2, 10))
    # t tiny: σ ≈ 1e-6, so no position is masked with this seed
    loss = sedd_loss(m, x0, 50, t=torch.full((2,), 1e-6), gen=torch.Generator().manual_seed(0))
    assert loss.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("words,want", [
    (["``", "Hello", ",", "world", "''", "."], '"Hello, world".'),
    (["He", "said", "``", "no", "''", "to", "them", "."], 'He said "no" to them.'),
    (["(", "a", ")", "b", "n't", ";"], "(a) bn't;"),
    (["Jr.", "."], "Jr."),
])
def test_detokenize(words, want):
    assert data.detokenize(words) == want


def test_strip_tag_keeps_slashes_in_words():
    assert data.strip_tag("1/2/cd") == "1/2"
    assert data.strip_tag("The/at") == "The"


TEXTS = ["the cat sat on the mat. the cat ran!", "Thé naïve café 😀, 12 345 and\n\n  spaces  "] * 3


def test_tokenizer_is_deterministic_and_round_trips():
    texts = TEXTS
    a, b = train_tokenizer.train(texts, 300), train_tokenizer.train(list(texts), 300)
    assert a.to_str() == b.to_str()
    # the library trains on several threads: one thread must learn the same merges
    one = subprocess.run([sys.executable, "-c", "import sys, train_tokenizer; "
                          f"print(train_tokenizer.train({texts!r}, 300).to_str())"],
                         cwd=os.path.dirname(os.path.abspath(__file__)), env={**os.environ, "RAYON_NUM_THREADS": "1"},
                         capture_output=True, text=True, check=True)
    assert one.stdout.strip() == a.to_str()
    assert a.get_vocab_size() == 300
    for t in texts + ["unseen wörds \x00\x7f 𝔘"]:
        assert a.decode(a.encode(t).ids) == t
    assert a.id_to_token(a.encode(" the").ids[0]) == "Ġthe"
    # every byte has its own id, so any text encodes
    assert len(a.encode(bytes(range(256)).decode("latin-1")).ids) >= 256 // 2


def test_tokenizer_ids_and_file(tmp_path):
    tok = train_tokenizer.train(["one two three two one three two"] * 4, 270)
    # the text runs out of pairs before 270: fewer merges, <|endoftext|> still the last id
    n = tok.get_vocab_size()
    assert 257 < n < 270 and tok.token_to_id(tokenizers.EOT) == n - 1
    ids = tok.encode("two<|endoftext|>one").ids
    assert ids.count(n - 1) == 1 and tok.decode(ids, skip_special_tokens=False) == "two<|endoftext|>one"
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    doc = tokenizers.read_tokenizer(str(path))
    assert tokenizers.vocab_size(doc) == n and tokenizers.eos_id(doc) == n - 1
    assert doc["pre_tokenizer"]["type"] == "ByteLevel" and not doc["pre_tokenizer"]["add_prefix_space"]
    assert doc["decoder"]["type"] == "ByteLevel" and doc["normalizer"] is None
    ids = train_tokenizer.encode_docs(tok, ["two one", "three"])
    assert ids.dtype == np.uint16 and ids[0] == ids[-1] == n - 1
    assert tok.decode(ids.tolist(), skip_special_tokens=False) == "<|endoftext|>two one<|endoftext|>three<|endoftext|>"


def test_causal_lm_does_not_look_ahead():
    torch.manual_seed(0)
    m = CausalLM(40, 32, 2, 2).eval()
    x = torch.randint(0, 40, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 40
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_split_is_stable():
    assert data.split_of("brown/ca01") == data.split_of("brown/ca01")
    counts = {"train": 0, "valid": 0, "test": 0}
    for i in range(2000):
        counts[data.split_of(f"doc/{i}")] += 1
    assert 1650 < counts["train"] < 1950 and counts["test"] > 50 and counts["valid"] > 50


def test_aligned_blocks_skip_the_leading_eot():
    from evaluate_sedd import aligned_blocks
    eot = 9
    ids = np.array([eot, 1, 2, eot, 3, eot, 4, 5, 6, eot], dtype=np.int64)
    blocks = aligned_blocks(ids, 4)
    assert blocks.tolist() == [[1, 2, eot, 3], [eot, 4, 5, 6]]  # the final eot is the dropped tail


@pytest.mark.parametrize("y, want", [
    ([[1.0, 3.0]], [2.0 * (1 + 1) / 4]),  # one pair: 2 · ((1-2)² + (3-2)²) / K²
    ([[1.0, 3.0, 5.0, 5.0]], [2.0 * 2 / 16]),  # second pair has no spread
    ([[1.0, 2.0, 3.0]], [1.5 * 2 / 9]),  # odd K: one group of three, var 1 · (3 - 1) · 3/2
    ([[2.0, 2.0], [0.0, 4.0]], [0.0, 2.0 * 8 / 4]),  # rows are independent
])
def test_mc_variance_pairs_adjacent_strata(y, want):
    from evaluate_sedd import mc_variance
    got = mc_variance(torch.tensor(y, dtype=torch.float64))
    assert got.tolist() == pytest.approx(want)


def test_checkpoints_hold_cpu_tensors(tmp_path):
    """save() writes every tensor on the CPU, so a checkpoint trained on a GPU loads and
    exports on a machine without one."""
    from common import EMA
    from train_sedd import save, to_cpu

    m = random_sedd()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.zeros((1, 4), dtype=torch.long), torch.ones(1)).sum().backward()
    opt.step()
    ema = EMA(m.parameters(), 0.9)
    (tmp_path / "checkpoints-meta").mkdir()
    save(str(tmp_path), m, ema, opt, 3)
    ck = torch.load(tmp_path / "checkpoints-meta" / "checkpoint.pth")
    tensors = []

    def walk(o):
        if torch.is_tensor(o):
            tensors.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(ck)
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert ck["step"] == 3 and len(ck["ema"]["shadow_params"]) == len(list(m.parameters()))
    assert to_cpu((1, [torch.ones(1)]))[1][0].device.type == "cpu"


def test_binomial_tail_is_the_beta_cdf():
    """Z_k rests on P(Beta(k, n - k + 1) <= x) = P(Binomial(n, x) >= k); check it by quadrature."""
    from train_sedd import binomial_tail
    n = 9
    for k in (1, 4, 9):
        for x in (0.001, 0.3, 0.999):
            grid = np.linspace(0.0, x, 200001)
            pdf = math.comb(n, k) * k * grid ** (k - 1) * (1 - grid) ** (n - k)
            area = float(((pdf[1:] + pdf[:-1]) * np.diff(grid)).sum() / 2)
            assert abs(area - binomial_tail(n, x, k)) < 1e-6


def test_count_masking_draws_exactly_k_masks_in_range():
    from train_sedd import CountMasking
    cm = CountMasking(16)
    x0 = torch.randint(0, 50, (400, 16))
    xt, sigma, w = cm.draw(x0, 50, torch.Generator().manual_seed(0))
    k = (xt == 50).sum(1)
    assert k.min() >= 1 and k.max() <= 16 and len(set(k.tolist())) > 10
    assert torch.equal(xt[xt != 50], x0[xt != 50])
    p = -torch.expm1(-sigma.double())
    assert p.min() >= cm.p_min - 1e-7 and p.max() <= cm.p_max + 1e-7
    assert (w > 0).all()


def test_count_masking_has_the_reference_expectation():
    """E[w · loss] under CountMasking equals the reference's E[loss] (same model, same x0), with
    far less spread: the difference is checked against 4 standard errors of both estimates."""
    from train_sedd import CountMasking
    m = random_sedd(3, std=0.1)  # scores near the data's: the loss is then mostly its cross-entropy part
    cm = CountMasking(12)
    x0 = torch.randint(0, 50, (1, 12)).repeat(6000, 1)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        ref = torch.cat([sedd_loss(m, x0, 50, gen=g) for _ in range(4)]).double()
        cnt = torch.cat([sedd_loss(m, x0, 50, gen=g, counts=cm) for _ in range(4)]).double()
    se = math.sqrt(ref.var() / len(ref) + cnt.var() / len(cnt))
    assert abs(ref.mean() - cnt.mean()) < 4 * se
    assert cnt.std() < 0.7 * ref.std()


SEDD_BIN = os.environ.get("SEDD_BIN")


def export_tiny(tok, src, out, name, seed):
    """(config, network, sedd.json) of a random-init tiny network over tok's vocabulary, exported
    to out; tok is saved in src (created) as the export's tokenizer."""
    src.mkdir()
    tok.save(str(src / "tokenizer.json"))
    cfg = checkpoints.shape_config("tiny")
    cfg["tokens"] = tok.get_vocab_size()
    model = checkpoints.random_init(checkpoints.build_model(cfg), seed)
    loaded = checkpoints.Loaded(model, cfg, {"kind": "random-init", "path": None, "seed": seed, "step": None},
                                str(src / "tokenizer.json"))
    doc = export_cli.export_model(loaded, str(out), name, seed=seed, log=lambda msg: None)
    return cfg, model, doc


@pytest.mark.skipif(not SEDD_BIN, reason="set SEDD_BIN to a built sedd binary (scripts/test.sh does) to run the Go SDK")
def test_trained_tokenizer_through_an_export_and_sedd(tmp_path):
    """A tokenizer the library trains works end to end: exported with a random-init network of its
    vocabulary size, the Go SDK verifies the export and encodes and decodes text as the library does."""
    texts = [("The jury said the city had no evidence. The city said the jury had none. " * 3)
             + f"Report {i}: prices rose {i * 7} percent in {1950 + i}, said the Atlanta office." for i in range(40)]
    tok = train_tokenizer.train(texts, 400)
    out = tmp_path / "model"
    cfg, _, doc = export_tiny(tok, tmp_path / "run", out, "tiny-trained-tokenizer", 5)
    assert doc["tokenizer"]["kind"] == "bpe" and doc["tokenizer"]["eos_id"] == cfg["tokens"] - 1

    r = subprocess.run([SEDD_BIN, "verify", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = "The jury said prices rose 14 percent in 1952, naïvely 😀."
    r = subprocess.run([SEDD_BIN, "sample", "--model", str(out), "--steps", "4", "--seed", "3", "--batch", "2",
                        "--prefix", prefix, "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = tok.encode(prefix).ids
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["tokens"][:len(want)] == want
        assert len(row["tokens"]) == cfg["model"]["length"]
        # Random tokens can end mid-character; the two replace bad bytes with U+FFFD a little differently.
        lossy = lambda text: re.sub("\ufffd+", "\ufffd", text)  # noqa: E731
        assert lossy(row["text"]) == lossy(tok.decode(row["tokens"], skip_special_tokens=False))
        assert row["text"].startswith(prefix)


def test_causal_lm_export_runs_in_onnx_runtime(tmp_path):
    """train_ar.py export writes an evaluator whose ONNX Runtime logits match its golden PyTorch logits."""
    import argparse

    import onnx
    import onnxruntime as ort

    from train_ar import cmd_export

    torch.manual_seed(1)
    model = CausalLM(64, 32, 1, 2)
    run, out = tmp_path / "run", tmp_path / "out"
    run.mkdir()
    cfg = {"vocab": 64, "hidden_size": 32, "n_blocks": 1, "n_heads": 2, "length": 16,
           "params": sum(p.numel() for p in model.parameters())}
    (run / "config.json").write_text(json.dumps(cfg))
    torch.save({"model": model.state_dict(), "ema": {"shadow_params": [p.detach().clone() for p in model.parameters()]},
                "step": 3}, run / "checkpoint.pth")
    tok = train_tokenizer.train(TEXTS, 64 + 257)  # any tokenizer file: the export only copies it
    tok.save(str(run / "tokenizer.json"))
    cmd_export(argparse.Namespace(run=str(run), out=str(out), threads=1))
    man = json.loads((out / "sedd.json").read_text())
    assert man["kind"] == "causal-lm" and man["onnx"]["opset"] == 18 and man["exporter"]["torch"] == torch.__version__
    proto = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "length", 64]
    golden = json.loads((out / "golden.json").read_text())
    raw = np.fromfile(out / "golden.bin", dtype="<f4")
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for c in golden["cases"]:
        x = np.asarray(c["input_ids"], dtype=np.int64).reshape(c["batch"], c["length"])
        (got,) = sess.run(None, {"input_ids": x})
        want = raw[c["logits"]["offset"] // 4: c["logits"]["offset"] // 4 + c["logits"]["count"]].reshape(got.shape)
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max())), c["name"]


def test_encode_with_an_existing_tokenizer(tmp_path):
    """--tokenizer encodes the splits with the given tokenizer.json (the shipped model's) instead of
    training one, and copies it to --out unchanged; a tokenizer without <|endoftext|> is refused."""
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    shipped = os.path.join(root, "models", "brown-sedd-small", "tokenizer.json")
    eot = tokenizers.EOT
    for split, docs in (("train", ["The jury said", "It was 2000."]), ("valid", ["He said"]), ("test", ["No"])):
        (tmp_path / f"{split}.txt").write_text(f"\n{eot}\n".join(docs) + "\n", encoding="utf-8")
    script = os.path.join(os.path.dirname(__file__), "train_tokenizer.py")
    out = tmp_path / "tok.json"
    r = subprocess.run([sys.executable, script, "--data", str(tmp_path), "--out", str(out), "--tokenizer", shipped],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(shipped)
    # byte for byte: the shipped model's sedd.json names the file's sha256
    assert out.read_bytes() == open(shipped, "rb").read()
    got = np.load(tmp_path / "train.ids.npy")
    assert got.tolist() == train_tokenizer.encode_docs(tok, ["The jury said", "It was 2000."]).tolist()
    assert got[0] == got[-1] == tok.token_to_id(eot) == 4095

    bad = train_tokenizer.train(["one two three"] * 4, 262).to_str().replace(eot, "<|end|>")
    (tmp_path / "bad.json").write_text(bad, encoding="utf-8")
    r = subprocess.run([sys.executable, script, "--data", str(tmp_path), "--out", str(out),
                        "--tokenizer", str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "needs <|endoftext|>" in r.stderr


def test_init_from_an_export(tmp_path):
    """--init-from starts a run from an exported model directory: shape from sedd.json, model and EMA
    weights from the export (unchanged at lr 0), a fresh optimizer; the run then resumes like any other.
    A run that already holds a checkpoint and data encoded with another tokenizer are refused."""
    texts = [f"The jury said the city had {i} votes. The office said none came in {1950 + i}." for i in range(60)]
    tok = train_tokenizer.train(texts, 300)
    out = tmp_path / "model"
    cfg, model, _ = export_tiny(tok, tmp_path / "src", out, "tiny-init-from", 7)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "tokenizer.json").write_bytes((out / "tokenizer.json").read_bytes())
    ids = train_tokenizer.encode_docs(tok, texts)
    for split in ("train", "valid", "test"):
        np.save(data_dir / f"{split}.ids.npy", ids)
    script = os.path.join(os.path.dirname(__file__), "train_sedd.py")
    run = tmp_path / "run"

    def train(*extra):
        return subprocess.run([sys.executable, script, "--data", str(data_dir), "--run", str(run), "--batch", "2",
                               "--threads", "1", "--eval-every", "1000", "--time-independent", *extra],
                              capture_output=True, text=True, timeout=300)

    r = train("--init-from", str(out), "--steps", "2", "--lr", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    with open(run / ".hydra" / "config.yaml", encoding="utf-8") as f:
        import yaml
        got_cfg = yaml.safe_load(f)
    assert got_cfg["model"]["time_independent"] is True
    for k in ("hidden_size", "n_blocks", "n_heads", "cond_dim", "length"):
        assert got_cfg["model"][k] == cfg["model"][k], k
    ck = torch.load(run / "checkpoints-meta" / "checkpoint.pth")
    want = model.state_dict()
    assert ck["step"] == 2 and ck["ema"]["num_updates"] == 2
    for name, t in ck["model"].items():
        assert torch.equal(t, want[name]), name
    assert all(torch.equal(s, p) for s, p in zip(ck["ema"]["shadow_params"], model.parameters()))
    log = (run / "train.log").read_text(encoding="utf-8")
    assert "initialized from" in log and re.search(r"start: valid loss/token [0-9.]+ with the time input read, "
                                                    r"[0-9.]+ with it held at 0", log), log

    r = train("--init-from", str(out), "--steps", "1")
    assert r.returncode != 0 and "already holds a checkpoint" in r.stderr
    r = train("--resume", "--steps", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert torch.load(run / "checkpoints-meta" / "checkpoint.pth")["step"] == 4

    other = train_tokenizer.train(texts, 290)
    other.save(str(data_dir / "tokenizer.json"))
    r = train("--init-from", str(out), "--run", str(tmp_path / "run2"), "--steps", "1")
    assert r.returncode != 0 and "is not the model's tokenizer" in r.stderr, r.stderr


def test_paired_bound():
    """paired_bound: the mean per-window difference and its standard error; unpaired runs refused."""
    import paired_bound

    def run(values, seed=3):
        seqs = [{"tokens": 128, "nats_per_token": v} for v in values]
        return {"timesteps": 16, "seed": seed, "tokens": 128 * len(values), "sequences": seqs,
                "nats_per_token": sum(values) / len(values), "stderr": 0.1}

    a, b = run([5.0, 6.0, 7.0, 4.0]), run([4.9, 5.8, 6.9, 4.0])
    mean, se, n = paired_bound.paired(a, b)
    d = [-0.1, -0.2, -0.1, 0.0]
    m = sum(d) / 4
    assert n == 4 and mean == pytest.approx(m, abs=1e-12)
    assert se == pytest.approx(math.sqrt(sum((x - m) ** 2 for x in d) / 3 / 4), abs=1e-12)
    with pytest.raises(ValueError, match="seed"):
        paired_bound.paired(a, run([1.0, 2.0, 3.0, 4.0], seed=4))
    with pytest.raises(ValueError, match="windows"):
        paired_bound.paired(a, run([1.0, 2.0]))
