"""Checkpoint loaders: HuggingFace directories, training-run directories, errors."""

import json
import os

import numpy as np
import pytest
import torch
import yaml

from seddpy import checkpoints, safetensors_io


def tiny_state(seed=11, graph="absorb"):
    return checkpoints.load_random("tiny", seed, graph).model.state_dict()


def assert_weights(model, state, cast=None):
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        want = v.to(cast).float() if cast is not None and v.is_floating_point() else v.float()
        assert torch.equal(got[k], want), k


def write_hf(path, state, fmt, config=None, wrap=False):
    os.makedirs(path, exist_ok=True)
    cfg = config or checkpoints.shape_config("tiny")
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"config": cfg} if wrap else cfg, f)
    if fmt == "bin":
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
    else:
        safetensors_io.save_file(state, os.path.join(path, "model.safetensors"))


@pytest.mark.parametrize(
    "name, fmt, dtype, wrap",
    [
        ("safetensors f32", "safetensors", torch.float32, False),
        ("safetensors f16", "safetensors", torch.float16, False),
        ("safetensors bf16", "safetensors", torch.bfloat16, False),
        ("pytorch_model.bin f32", "bin", torch.float32, False),
        ("pytorch_model.bin bf16", "bin", torch.bfloat16, False),
        ("config nested under 'config'", "safetensors", torch.float32, True),
    ],
)
def test_hf_dir(tmp_path, name, fmt, dtype, wrap):
    state = tiny_state()
    stored = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    d = str(tmp_path / "sedd-tiny")
    write_hf(d, stored, fmt, wrap=wrap)
    loaded = checkpoints.load_checkpoint(d)
    assert_weights(loaded.model, state, cast=dtype)
    assert loaded.source["kind"] == "huggingface"
    assert loaded.source["path"] == "sedd-tiny"
    assert len(loaded.source["weights_sha256"]) == 64
    assert loaded.tokenizer_path is None
    assert not loaded.model.training


def test_hf_dir_prefers_safetensors_and_finds_tokenizer(tmp_path):
    d = str(tmp_path)
    write_hf(d, tiny_state(1), "safetensors")
    torch.save(tiny_state(2), os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write("{}")
    loaded = checkpoints.load_checkpoint(d)
    assert_weights(loaded.model, tiny_state(1))
    assert loaded.source["weights_file"] == "model.safetensors"
    assert loaded.tokenizer_path == os.path.join(d, "tokenizer.json")


def test_hf_dir_missing_inv_freq_is_computed(tmp_path):
    state = tiny_state()
    del state["rotary_emb.inv_freq"]
    write_hf(str(tmp_path), state, "safetensors")
    model = checkpoints.load_checkpoint(str(tmp_path)).model
    assert torch.equal(model.rotary_emb.inv_freq, tiny_state()["rotary_emb.inv_freq"])


def test_module_prefix_is_stripped(tmp_path):
    state = tiny_state()
    write_hf(str(tmp_path), {"module." + k: v for k, v in state.items()}, "bin")
    assert_weights(checkpoints.load_checkpoint(str(tmp_path)).model, state)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("missing key", lambda s: s.pop("blocks.1.mlp.0.bias"), "checkpoint has no blocks.1.mlp.0.bias (expected shape [128])"),
        ("wrong shape", lambda s: s.__setitem__("sigma_map.mlp.0.weight", torch.zeros(16, 128)),
         "checkpoint sigma_map.mlp.0.weight has shape [16, 128], expected [16, 256]"),
        ("unexpected key", lambda s: s.__setitem__("blocks.2.norm1.weight", torch.ones(32)),
         "unexpected key blocks.2.norm1.weight"),
        # Two problems: the first in the network's order is named.
        ("first of two", lambda s: (s.pop("output_layer.linear.bias"), s.pop("blocks.0.norm2.weight")),
         "checkpoint has no blocks.0.norm2.weight"),
    ],
)
def test_mismatch_names_first_bad_key(tmp_path, name, edit, message):
    state = tiny_state()
    edit(state)
    write_hf(str(tmp_path), state, "safetensors")
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(str(tmp_path))
    assert message in str(err.value)
    assert "model.safetensors" in str(err.value)


def write_run(path, model_state, ema_params, step=1234, extra_yaml=""):
    os.makedirs(os.path.join(path, ".hydra"))
    os.makedirs(os.path.join(path, "checkpoints-meta"))
    cfg = checkpoints.shape_config("tiny")
    cfg["training"] = {"ema": 0.9999, "seed": 7}
    text = yaml.safe_dump(cfg) + extra_yaml
    with open(os.path.join(path, ".hydra", "config.yaml"), "w") as f:
        f.write(text)
    torch.save({
        "model": model_state,
        "ema": {"decay": 0.9999, "num_updates": 10, "shadow_params": ema_params},
        "optimizer": {"state": {}, "param_groups": []},
        "step": step,
    }, os.path.join(path, "checkpoints-meta", "checkpoint.pth"))


def test_run_dir_uses_ema_weights(tmp_path):
    raw = checkpoints.load_random("tiny", 1).model
    ema = checkpoints.load_random("tiny", 2).model
    shadow = [p.detach().clone() for p in ema.parameters() if p.requires_grad]
    d = str(tmp_path / "run")
    # Hydra interpolations in keys we do not read must not matter.
    write_run(d, raw.state_dict(), shadow, extra_yaml="hydra:\n  run:\n    dir: exp/${data.train}/${now:%H%M%S}\n")
    loaded = checkpoints.load_checkpoint(d)
    assert_weights(loaded.model, ema.state_dict())
    assert loaded.source == {**loaded.source, "kind": "training-run", "path": "run", "step": 1234, "seed": 7, "weights": "ema"}
    plain = checkpoints.load_checkpoint(d, use_ema=False)
    assert_weights(plain.model, raw.state_dict())


def test_run_dir_with_tensor_step_and_snapshot_fallback(tmp_path):
    state = tiny_state()
    model = checkpoints.load_random("tiny", 11).model
    shadow = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    d = str(tmp_path)
    write_run(d, state, shadow, step=torch.tensor(99))
    os.makedirs(os.path.join(d, "checkpoints"))
    os.rename(os.path.join(d, "checkpoints-meta", "checkpoint.pth"), os.path.join(d, "checkpoints", "checkpoint_99.pth"))
    loaded = checkpoints.load_checkpoint(d)
    assert loaded.source["step"] == 99
    assert loaded.source["weights_file"] == os.path.join("checkpoints", "checkpoint_99.pth")


def test_run_dir_with_real_optimizer_state_loads_safely(tmp_path):
    model = checkpoints.load_random("tiny", 1).model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    model(torch.zeros(1, 4, dtype=torch.int64), torch.ones(1)).sum().backward()
    opt.step()
    shadow = [p.detach().clone() for p in model.parameters()]
    write_run(str(tmp_path), model.state_dict(), shadow)
    ckpt = os.path.join(str(tmp_path), "checkpoints-meta", "checkpoint.pth")
    state = torch.load(ckpt)
    state["optimizer"] = opt.state_dict()
    torch.save(state, ckpt)
    assert_weights(checkpoints.load_checkpoint(str(tmp_path)).model, model.state_dict())


def test_pickled_objects_need_trust(tmp_path):
    import argparse

    state = tiny_state()
    write_hf(str(tmp_path), state, "bin")
    torch.save({**state, "extra": argparse.Namespace(a=1)}, str(tmp_path / "pytorch_model.bin"))
    with pytest.raises(checkpoints.CheckpointError, match="trust-pickle"):
        checkpoints.load_checkpoint(str(tmp_path))
    # Trusted, it unpickles and then fails on the key, not on the pickle.
    with pytest.raises(checkpoints.CheckpointError, match="unexpected key extra"):
        checkpoints.load_checkpoint(str(tmp_path), trust_pickle=True)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("one shadow short", lambda s: s.pop(), "ema has 29 shadow parameters, the network has 30"),
        ("wrong shadow shape", lambda s: s.__setitem__(0, torch.zeros(3, 3)),
         "ema shadow parameter for vocab_embed.embedding has shape [3, 3], expected [257, 32]"),
    ],
)
def test_run_dir_ema_mismatch(tmp_path, name, edit, message):
    model = checkpoints.load_random("tiny", 1).model
    shadow = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    edit(shadow)
    write_run(str(tmp_path), model.state_dict(), shadow)
    with pytest.raises(checkpoints.CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        checkpoints.load_checkpoint(str(tmp_path))


@pytest.mark.parametrize(
    "name, files, message",
    [
        ("empty directory", {}, "neither a HuggingFace model directory"),
        ("config without weights", {"config.json": "{}"}, "no model.safetensors or pytorch_model.bin"),
        ("config missing fields", {"config.json": '{"tokens": 256}', "pytorch_model.bin": ""}, "config has no graph.type"),
        ("bad graph", {"config.json": json.dumps({**checkpoints.shape_config("tiny"), "graph": {"type": "ring"}}),
                       "pytorch_model.bin": ""}, "graph.type is 'ring'"),
        ("empty pytorch_model.bin", {"config.json": json.dumps(checkpoints.shape_config("tiny")),
                                     "pytorch_model.bin": ""}, "not a PyTorch checkpoint"),
        ("run dir without checkpoint", {".hydra/config.yaml": "tokens: 256\n"}, "no checkpoints-meta/checkpoint.pth"),
        ("truncated safetensors", {"config.json": json.dumps(checkpoints.shape_config("tiny")),
                                   "model.safetensors": "abc"}, "shorter than the 8-byte header length"),
    ],
)
def test_load_errors(tmp_path, name, files, message):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    with pytest.raises(checkpoints.CheckpointError, match=message):
        checkpoints.load_checkpoint(str(tmp_path))


def test_load_missing_path(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no such file or directory"):
        checkpoints.load_checkpoint(str(tmp_path / "nope"))


def test_safetensors_round_trip(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "i64": torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        "scalar": torch.tensor(2.5),
    }
    path = str(tmp_path / "t.safetensors")
    safetensors_io.save_file(tensors, path, metadata={"format": "pt"})
    header, meta, start = safetensors_io.read_header(path)
    assert meta == {"format": "pt"} and start % 8 == 0
    assert header["bf16"]["dtype"] == "BF16" and header["i64"]["shape"] == [2, 3]
    back = safetensors_io.load_file(path)
    assert torch.equal(back["f32"], tensors["f32"])
    assert back["f16"].dtype == torch.float16 and torch.equal(back["f16"], tensors["f16"])
    assert back["bf16"].dtype == torch.float32 and torch.equal(back["bf16"], tensors["bf16"].float())
    assert back["i64"].dtype == torch.int64 and torch.equal(back["i64"], tensors["i64"])
    assert back["scalar"].shape == () and back["scalar"].item() == 2.5


def test_safetensors_reads_foreign_layout(tmp_path):
    # Written by hand the way the safetensors library lays files out: data not sorted by name.
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([1, 2], dtype="<i8")
    header = {"b": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
              "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [16, 40]}}
    text = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + b.tobytes() + a.tobytes())
    back = safetensors_io.load_file(str(path))
    assert back["a"].tolist() == a.tolist() and back["b"].tolist() == [1, 2]
    header["a"]["data_offsets"] = [16, 44]
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b.tobytes() + a.tobytes())
    with pytest.raises(safetensors_io.SafetensorsError, match="data_offsets"):
        safetensors_io.load_file(str(path))
