"""Checkpoint loaders: HuggingFace directories, training-run directories, errors."""

import json
import os

import pytest
import safetensors.torch
import torch
import yaml
from huggingface_hub import PyTorchModelHubMixin

import export as export_cli
from seddpy import checkpoints
from seddpy.model import SEDD


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
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"config": cfg} if wrap else cfg, f)
    if fmt == "bin":
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
    else:
        safetensors.torch.save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


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


def published_config(shape="tiny"):
    """The training config the published sedd-small repository's config.json holds: the
    reference's configs/config.yaml with model/small.yaml, hydra's own section left out. With
    shape "tiny" the model section (and tokens) are the tiny shape's, so tests stay fast."""
    cfg = {
        "ngpus": 8, "tokens": 50257,
        "training": {"batch_size": 512, "accum": 1, "n_iters": 1300001, "snapshot_freq": 50000, "log_freq": 50,
                     "eval_freq": 100, "snapshot_freq_for_preemption": 10000, "weight": "standard",
                     "snapshot_sampling": True, "ema": 0.9999},
        "data": {"train": "openwebtext", "valid": "wikitext103", "cache_dir": "data"},
        "graph": {"type": "absorb", "file": "data", "report_all": False},
        "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"predictor": "euler", "steps": 128, "noise_removal": True},
        "eval": {"batch_size": 512, "perplexity": True, "perplexity_batch_size": 32},
        "optim": {"weight_decay": 0, "optimizer": "AdamW", "lr": 3e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                  "warmup": 2500, "grad_clip": 1.0},
        "model": {"name": "small", "type": "ddit", "hidden_size": 768, "cond_dim": 128, "length": 1024,
                  "n_blocks": 12, "n_heads": 12, "scale_by_sigma": True, "dropout": 0.1},
    }
    if shape != "small":
        tiny = checkpoints.shape_config(shape)
        cfg["tokens"], cfg["model"] = tiny["tokens"], tiny["model"]
    return cfg


class HubSEDD(SEDD, PyTorchModelHubMixin):
    """The reference's class line, `class SEDD(nn.Module, PyTorchModelHubMixin)`, on our network:
    save_pretrained writes config.json and model.safetensors as the published repositories have them."""


def test_hub_mixin_directory_loads_and_exports(tmp_path):
    cfg = published_config()
    hub = HubSEDD(cfg)
    checkpoints.random_init(hub, 3)
    d = tmp_path / "sedd-tiny-hub"
    hub.save_pretrained(str(d))
    assert {"config.json", "model.safetensors"} <= set(os.listdir(d))
    assert json.loads((d / "config.json").read_text()) == cfg
    with safetensors.safe_open(str(d / "model.safetensors"), "pt") as f:
        # every key of the network, rotary_emb.inv_freq included: the strict match is exercised
        assert set(f.keys()) == set(hub.state_dict())
    loaded = checkpoints.load_checkpoint(str(d))
    assert_weights(loaded.model, hub.state_dict())
    assert loaded.source["weights_file"] == "model.safetensors"
    doc = export_cli.export_model(loaded, str(tmp_path / "out"), "sedd-tiny-hub", log=lambda msg: None)
    assert doc["source"]["kind"] == "huggingface" and doc["noise"] == {"type": "loglinear", "eps": 1e-3}
    assert doc["verify"]["max_abs_err"] < 1e-4
    assert "openwebtext" in (tmp_path / "out" / "README.md").read_text()


def test_hub_mixin_directory_with_an_extra_key_is_refused(tmp_path):
    hub = HubSEDD(published_config())
    hub.register_buffer("extra", torch.zeros(3))
    hub.save_pretrained(str(tmp_path))
    with pytest.raises(checkpoints.CheckpointError, match="unexpected key extra"):
        checkpoints.load_checkpoint(str(tmp_path))


def test_hf_dir_prefers_safetensors_and_finds_tokenizer(tmp_path):
    d = str(tmp_path)
    write_hf(d, tiny_state(1), "safetensors")
    torch.save(tiny_state(2), os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
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
    with open(os.path.join(path, ".hydra", "config.yaml"), "w", encoding="utf-8") as f:
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
                                   "model.safetensors": "abc"}, "not a safetensors file: .*header too small"),
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
