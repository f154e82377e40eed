"""seddpy.goldcheck: committed golden files are current within the precision that made them,
and the tolerances are tight enough that a real change fails the check."""

import json
import math
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORT = os.path.join(HERE, "..")
sys.path.insert(0, EXPORT)

from seddpy import goldcheck as gc  # noqa: E402

import make_likelihood_golden as lg  # noqa: E402
import make_math_golden as mg  # noqa: E402


def test_within():
    assert gc.within(1.0 + 0.9e-12, 1.0, gc.FLOAT64)
    assert not gc.within(1.0 + 1.2e-12, 1.0, gc.FLOAT64)
    assert gc.within(5e-14, 0.0, gc.FLOAT64)
    assert not gc.within(2e-13, 0.0, gc.FLOAT64)
    assert gc.within(180.0 * (1 + 0.9e-6), 180.0, gc.FLOAT32_NETWORK)
    assert not gc.within(180.0 * (1 + 1.1e-6), 180.0, gc.FLOAT32_NETWORK)
    assert gc.within(math.nan, math.nan, gc.FLOAT64) and not gc.within(math.nan, 1.0, gc.FLOAT64)
    assert gc.within(math.inf, math.inf, gc.FLOAT64) and not gc.within(math.inf, 1e308, gc.FLOAT64)


@pytest.mark.parametrize(
    "fresh,committed,reason",
    [
        ({"a": [1, 2]}, {"a": [1, 3]}, "integers are exact"),
        ({"a": "x"}, {"a": "y"}, "strings are exact"),
        ({"a": 1}, {"b": 1}, "keys are exact"),
        ({"a": [1.0]}, {"a": [1.0, 2.0]}, "lengths are exact"),
        ({"a": True}, {"a": 1}, "a bool is not a number"),
        ({"a": None}, {"a": 0.0}, "null is not a number"),
    ],
)
def test_differences_exact_parts(fresh, committed, reason):
    assert gc.differences(fresh, committed, lambda _: gc.FLOAT64), reason


def test_differences_names_the_field():
    d = gc.differences({"w": [{"nats": 2.0}]}, {"w": [{"nats": 1.0}]}, lambda _: gc.FLOAT64)
    assert len(d) == 1 and d[0].startswith("w[0].nats:"), d
    assert gc.differences({"m": 1.0}, {"m": 0.0}, lambda _: gc.MEASURED) == []


@pytest.fixture(scope="module")
def math_fresh():
    return mg.build()


@pytest.fixture(scope="module")
def likelihood_fresh():
    import torch

    torch.set_num_threads(1)
    return lg.build(lg.MODEL_DIRS)


def committed(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_math_golden_current(math_fresh):
    assert mg.stale(math_fresh, mg.OUT) == []


def test_likelihood_goldens_current(likelihood_fresh):
    assert set(likelihood_fresh) == {"score_entropy.json", "tiny-absorb-estimate.json", "tiny-uniform-estimate.json"}
    assert lg.stale(likelihood_fresh, lg.OUT_DIR) == {}


# (file, path of a number in it, its tolerance): one number of each kind of golden value.
PERTURBED = [
    ("refmath", "transitions[24].probs[4][4]", gc.FLOAT64),
    ("refmath", "noise[0].total[4]", gc.FLOAT64),
    ("score_entropy.json", "cases[4].loss", gc.FLOAT64),
    ("score_entropy.json", "cases[10].entropy[7]", gc.FLOAT64),
    ("tiny-absorb-estimate.json", "windows[0].nats", gc.FLOAT32_NETWORK),
    ("tiny-absorb-estimate.json", "stderr", gc.FLOAT32_NETWORK),
    ("tiny-uniform-estimate.json", "nats_per_token", gc.FLOAT32_NETWORK),
]


@pytest.mark.parametrize("name,path,tol", PERTURBED)
def test_tolerance_cannot_hide_a_real_change(name, path, tol, math_fresh, likelihood_fresh, tmp_path):
    """A golden number moved by 10 times its tolerance is reported stale; moved by half of
    it, it still passes (so the tolerance is the one goldcheck documents)."""
    if name == "refmath":
        doc = committed(mg.OUT)
        for factor, want_stale in ((10, True), (-10, True), (0.5, False), (-0.5, False)):
            out = tmp_path / f"refmath-{factor}.json"
            out.write_text(json.dumps(gc.moved(doc, path, tol, factor)))
            diffs = mg.stale(math_fresh, str(out))
            assert bool(diffs) == want_stale, (factor, diffs)
            if want_stale:
                assert len(diffs) == 1 and diffs[0].startswith(path + ":"), diffs
        return
    assert lg.tolerance(name, path) == tol
    doc = committed(os.path.join(lg.OUT_DIR, name))
    for factor, want_stale in ((10, True), (-10, True), (0.5, False), (-0.5, False)):
        d = tmp_path / str(factor)
        d.mkdir()
        for other in likelihood_fresh:
            src = gc.moved(doc, path, tol, factor) if other == name else committed(os.path.join(lg.OUT_DIR, other))
            (d / other).write_text(json.dumps(src))
        bad = lg.stale(likelihood_fresh, str(d))
        assert bool(bad) == want_stale, (factor, bad)
        if want_stale:
            assert list(bad) == [str(d / name)] and bad[str(d / name)][0].startswith(path + ":"), bad


def test_measured_field_is_not_compared(likelihood_fresh, tmp_path):
    """golden_max_rel_diff says how closely this machine's rebuilt network reproduces the
    export's goldens; it differs by CPU and is gated at 1e-6 before the file is written."""
    for name in likelihood_fresh:
        doc = committed(os.path.join(lg.OUT_DIR, name))
        if "golden_max_rel_diff" in doc:
            doc["golden_max_rel_diff"] = 9.9e-7
        (tmp_path / name).write_text(json.dumps(doc))
    assert lg.stale(likelihood_fresh, str(tmp_path)) == {}


@pytest.mark.parametrize("script", ["make_math_golden.py", "make_likelihood_golden.py", "make_unmask_golden.py"])
def test_check_cli(script):
    res = subprocess.run([sys.executable, os.path.join(EXPORT, script), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
