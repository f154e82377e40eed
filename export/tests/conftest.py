"""Shared fixtures of the export tests: seddpy on sys.path, tiny configs, and export
directories built once per session."""

import os
import sys

import pytest

EXPORT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if EXPORT not in sys.path:
    sys.path.insert(0, EXPORT)

from seddpy import checkpoints  # noqa: E402


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Exports of random-init tiny absorb (seed 1) and uniform (seed 2): {graph: (dir, manifest)}."""
    import export as export_cli

    out = {}
    for graph, seed in (("absorb", 1), ("uniform", 2)):
        d = str(tmp_path_factory.mktemp(f"tiny-{graph}"))
        loaded = checkpoints.load_random("tiny", seed, graph)
        doc = export_cli.export_model(loaded, d, f"tiny-{graph}", seed=seed, log=lambda msg: None)
        out[graph] = (d, doc, loaded)
    return out
