"""A second, independent runtime for every export: the golden cases through ONNX Runtime for
Python, compared with the PyTorch outputs by the contract's measure (docs/DESIGN.md): per case and
output, max|ONNX - PyTorch| <= tolerance * max(1, max|PyTorch|), and log_score exactly 0 at the
input tokens. The Go SDK's `sedd verify` measures the same with its own ONNX Runtime build."""

import numpy as np
import onnxruntime as ort

from .golden import TOLERANCE

VERSION = ort.__version__


class MismatchError(Exception):
    """An export whose ONNX Runtime outputs differ from PyTorch's beyond the tolerance."""


def session(path, threads=0):
    """A CPU InferenceSession for path; threads 0 lets ONNX Runtime use every core."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def compare(path, cases, tolerance=TOLERANCE, threads=0):
    """Runs each case (dicts with name, indices, sigma, log_score, log_score_lse, as
    golden.make_cases or golden.read_golden give them) through path and returns
    {"onnxruntime", "max_abs_err", "max_rel_err", "max_kl", "mean_kl",
    "cases": [{"name", "abs_err", "rel_err", "max_kl"}]} (KL: see position_kl).
    Raises MismatchError for a case past the tolerance or a nonzero log_score at an input token."""
    sess = session(path, threads)
    report = {"onnxruntime": VERSION, "max_abs_err": 0.0, "max_rel_err": 0.0, "max_kl": 0.0, "cases": []}
    kl_sum, kl_n = 0.0, 0
    for c in cases:
        indices = np.asarray(c["indices"], dtype=np.int64)
        sigma = np.asarray(c["sigma"], dtype=np.float32)
        got = run(sess, indices, sigma)
        abs_err, rel_err = _errors(got, c, None)
        if has_rows(sess):
            # the head on some rows only (ONNX-CONTRACT.md, rows): the same values as the full head
            rows = check_rows(indices)
            part = run(sess, indices, sigma, rows)
            a, r = _errors(part, c, rows)
            abs_err, rel_err = max(abs_err, a), max(rel_err, r)
        kl = position_kl(np.asarray(c["log_score"], dtype=np.float32).reshape(got["log_score"].shape), got["log_score"])
        kl_sum, kl_n = kl_sum + float(kl.sum()), kl_n + kl.size
        at_input = np.take_along_axis(got["log_score"], indices[..., None], axis=-1)
        if np.any(at_input != 0):
            raise MismatchError(f"{path}: case {c['name']}: log_score is not 0 at {int((at_input != 0).sum())} input tokens")
        if not rel_err <= tolerance:
            raise MismatchError(f"{path}: case {c['name']}: ONNX Runtime {VERSION} differs from PyTorch by "
                                f"{rel_err:.3g} relative ({abs_err:.3g} absolute), tolerance {tolerance:g}")
        report["cases"].append({"name": c["name"], "abs_err": abs_err, "rel_err": rel_err, "max_kl": float(kl.max())})
        report["max_abs_err"] = max(report["max_abs_err"], abs_err)
        report["max_rel_err"] = max(report["max_rel_err"], rel_err)
        report["max_kl"] = max(report["max_kl"], float(kl.max()))
    report["mean_kl"] = kl_sum / max(1, kl_n)
    return report


def has_rows(sess):
    """Whether the graph of sess takes the rows input (the output head on some rows only)."""
    return any(i.name == "rows" for i in sess.get_inputs())


def run(sess, indices, sigma, rows=None):
    """{"log_score", "log_score_lse"} of the graph of sess at indices [batch, length] and sigma:
    at the flat positions rows ([R, N] and [R]) when given, else at every position ([batch,
    length, N] and [batch, length]; a graph with the rows input is given every row)."""
    feed = {"indices": indices, "sigma": sigma}
    b, length = indices.shape
    if rows is not None:
        feed["rows"] = np.asarray(rows, dtype=np.int64)
    elif has_rows(sess):
        feed["rows"] = np.arange(b * length, dtype=np.int64)
    ls, lse = sess.run(["log_score", "log_score_lse"], feed)
    if rows is None:
        ls, lse = ls.reshape(b, length, -1), lse.reshape(b, length)
    return {"log_score": ls, "log_score_lse": lse}


def check_rows(indices):
    """The rows a golden case's second check asks for: every third position, the last included,
    in a shuffled order (the graph must honour any order; the SDK asks in increasing order)."""
    n = indices.size
    rows = np.unique(np.append(np.arange(0, n, 3), n - 1))
    return np.random.default_rng(n).permutation(rows)


def _errors(got, case, rows):
    """max |got - PyTorch| and that over max(1, max |PyTorch|) over both outputs, at rows (flat
    positions) when given."""
    abs_err = rel_err = 0.0
    for key, out in got.items():
        want = np.asarray(case[key], dtype=np.float32)
        if rows is not None:
            n = out.shape[-1] if key == "log_score" else 1  # want may be flat (read from golden.bin)
            want = want.reshape(-1, n)[rows]
        want = want.reshape(out.shape)
        err = float(np.abs(out.astype(np.float64) - want).max()) if out.size else 0.0
        abs_err = max(abs_err, err)
        rel_err = max(rel_err, err / max(1.0, float(np.abs(want).max())))
    return abs_err, rel_err


def position_kl(want, got):
    """KL(p || q) in nats at each position, p and q the distributions over the N states that
    exp(log_score) defines once normalised (for the absorbing graph: the denoiser's guess of the
    clean token). The max absolute error weighs a state of probability 1e-9 like the likely ones;
    this weighs them as sampling and the likelihood bound do."""
    def log_softmax(x):
        x = x.astype(np.float64)
        m = x.max(axis=-1, keepdims=True)
        return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    lp, lq = log_softmax(want), log_softmax(got)
    return np.maximum(0.0, (np.exp(lp) * (lp - lq)).sum(axis=-1))
