"""Published model shapes and checkpoint loaders for the SEDD score network.

Three sources give a ready SEDD (float32, eval mode) together with its training config:

- a HuggingFace-layout directory (what louaaron/sedd-small and sedd-medium publish):
  config.json (the whole training config, as PyTorchModelHubMixin writes it) and
  model.safetensors or pytorch_model.bin;
- a reference training-run directory: .hydra/config.yaml and
  checkpoints-meta/checkpoint.pth ({model, ema, optimizer, step}); the EMA weights are used,
  as the reference's load_model_local does;
- random initialisation of a named shape (small, medium, tiny) with a seed.

Configs are plain dicts in the reference's training-config layout (tokens, graph.type,
noise, model.*), so that seddpy.model.SEDD(config) builds the network.
"""

import copy
import glob
import json
import os
import pickle
import re

import safetensors
import safetensors.torch
import torch
import yaml

from .hashes import file_sha256
from .model import SEDD

# Noise schedules of the reference configs. The reference's LogLinearNoise ignores the
# config and always uses eps = 1e-3; sigma_min/sigma_max sit in its config.yaml anyway.
LOGLINEAR_EPS = 1e-3

_SMALL = {
    "tokens": 50257,
    "graph": {"type": "absorb"},
    "noise": {"type": "loglinear", "eps": LOGLINEAR_EPS, "sigma_min": 1e-4, "sigma_max": 20},
    "model": {
        "name": "small", "type": "ddit", "hidden_size": 768, "cond_dim": 128, "length": 1024,
        "n_blocks": 12, "n_heads": 12, "scale_by_sigma": True, "dropout": 0.1,
    },
}

_MEDIUM = copy.deepcopy(_SMALL)
_MEDIUM["model"].update(name="medium", hidden_size=1024, n_blocks=24, n_heads=16)

_TINY = {
    "tokens": 256,
    "graph": {"type": "absorb"},
    "noise": {"type": "loglinear", "eps": LOGLINEAR_EPS, "sigma_min": 1e-4, "sigma_max": 20},
    "model": {
        "name": "tiny", "type": "ddit", "hidden_size": 32, "cond_dim": 16, "length": 32,
        "n_blocks": 2, "n_heads": 2, "scale_by_sigma": True, "dropout": 0.0,
    },
}

SHAPES = {"small": _SMALL, "medium": _MEDIUM, "tiny": _TINY}

# The weight files a checkpoint directory may hold, in order of preference.
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
RUN_CONFIG = os.path.join(".hydra", "config.yaml")
RUN_CHECKPOINT = os.path.join("checkpoints-meta", "checkpoint.pth")


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded: missing files, a bad config, or weights that do
    not fit the network. The message names the file or the first offending key."""


def shape_config(shape, graph="absorb"):
    """The training config of a named shape ("small", "medium", "tiny") for graph "absorb"
    or "uniform". The uniform variant has scale_by_sigma False and geometric noise
    (sigma_min 1e-4, sigma_max 20), as the reference's uniform configs have."""
    if shape not in SHAPES:
        raise CheckpointError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    if graph not in ("absorb", "uniform"):
        raise CheckpointError(f"unknown graph {graph!r}; use 'absorb' or 'uniform'")
    cfg = copy.deepcopy(SHAPES[shape])
    cfg["graph"]["type"] = graph
    if graph == "uniform":
        cfg["model"]["scale_by_sigma"] = False
        cfg["noise"] = {"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20}
    return cfg


def _need(cfg, dotted, kind):
    cur = cfg
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise CheckpointError(f"config has no {dotted}")
        cur = cur[part]
    if kind is int and (isinstance(cur, bool) or not isinstance(cur, int)):
        raise CheckpointError(f"config {dotted} is {cur!r}, want an integer")
    if kind is str and not isinstance(cur, str):
        raise CheckpointError(f"config {dotted} is {cur!r}, want a string")
    return cur


def check_config(cfg):
    """Raises CheckpointError unless cfg has every field the network and the manifest need."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"config is a {type(cfg).__name__}, want a mapping")
    if _need(cfg, "tokens", int) <= 0:
        raise CheckpointError("config tokens must be > 0")
    graph = _need(cfg, "graph.type", str)
    if graph not in ("absorb", "uniform"):
        raise CheckpointError(f"config graph.type is {graph!r}; only 'absorb' and 'uniform' are supported")
    noise = _need(cfg, "noise.type", str)
    if noise not in ("loglinear", "geometric"):
        raise CheckpointError(f"config noise.type is {noise!r}; only 'loglinear' and 'geometric' are supported")
    if noise == "geometric":
        for k in ("sigma_min", "sigma_max"):
            v = _need(cfg, "noise." + k, None)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise CheckpointError(f"config noise.{k} is {v!r}, want a number > 0")
    for k in ("hidden_size", "cond_dim", "n_blocks", "n_heads", "length"):
        if _need(cfg, "model." + k, int) <= 0:
            raise CheckpointError(f"config model.{k} must be > 0")
    if cfg["model"]["hidden_size"] % cfg["model"]["n_heads"]:
        raise CheckpointError("config model.hidden_size is not a multiple of model.n_heads")
    if graph == "uniform" and cfg["model"].get("scale_by_sigma"):
        raise CheckpointError("config model.scale_by_sigma is only defined for the absorb graph")
    ti = cfg["model"].get("time_independent", False)
    if not isinstance(ti, bool):
        raise CheckpointError(f"config model.time_independent is {ti!r}, want true or false")
    if ti and not cfg["model"].get("scale_by_sigma"):
        raise CheckpointError("config model.time_independent needs model.scale_by_sigma (and so the absorb graph)")


def build_model(config):
    """A SEDD network for config (reference training-config layout), float32, eval mode,
    with the reference's initialisation (zeros in the adaLN and output layers)."""
    check_config(config)
    return SEDD(config).float().eval()


def random_init(model, seed):
    """Fills every parameter of model with N(0, 0.02²) from a generator seeded with seed,
    the zero-initialised adaLN and output layers included, so that outputs are non-trivial;
    layer-norm weights become 1 + N(0, 0.02²). Buffers (rotary_emb.inv_freq) keep their
    computed values. Returns model."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.02
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm_final.weight"):
                noise += 1.0
            p.copy_(noise)
    return model


def count_params(model):
    """Number of trainable parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def strip_module_prefix(state):
    """Removes the "module." prefix that DistributedDataParallel puts on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(model, state):
    """Copies state into model with strict key and shape checks, as float32.

    On any mismatch raises CheckpointError naming the first mismatching key in the model's
    order (missing or wrongly shaped), or else the first unexpected key of state. The one
    tolerated gap is a missing rotary_emb.inv_freq: it is a constant the network computes."""
    state = strip_module_prefix(dict(state))
    expected = model.state_dict()
    for key, want in expected.items():
        if key not in state:
            if key == "rotary_emb.inv_freq":
                continue
            raise CheckpointError(f"checkpoint has no {key} (expected shape {list(want.shape)})")
        got = state[key]
        if not torch.is_tensor(got):
            raise CheckpointError(f"checkpoint {key} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"checkpoint {key} has shape {list(got.shape)}, expected {list(want.shape)}"
            )
    for key in state:
        if key not in expected:
            raise CheckpointError(f"checkpoint has unexpected key {key} (shape {list(getattr(state[key], 'shape', []))})")
    full = {k: state.get(k, v).float() for k, v in expected.items()}
    model.load_state_dict(full, strict=True)
    return model


def apply_ema(model, ema_state):
    """Copies the reference's EMA shadow parameters into model. ema_state is
    {decay, num_updates, shadow_params}: shadow_params lists one tensor per parameter of
    model.parameters() that requires grad, in that order."""
    if not isinstance(ema_state, dict) or "shadow_params" not in ema_state:
        raise CheckpointError("ema state has no shadow_params")
    shadow = list(ema_state["shadow_params"])
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if len(shadow) != len(params):
        raise CheckpointError(f"ema has {len(shadow)} shadow parameters, the network has {len(params)}")
    with torch.no_grad():
        for (name, p), s in zip(params, shadow):
            if tuple(s.shape) != tuple(p.shape):
                raise CheckpointError(
                    f"ema shadow parameter for {name} has shape {list(s.shape)}, expected {list(p.shape)}"
                )
            p.copy_(s.float())
    return model


def _first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else type(e).__name__


def torch_load(path, trust_pickle=False):
    """torch.load onto the CPU. Unless trust_pickle, with weights_only=True: only tensors,
    storages and plain containers are unpickled, so a checkpoint cannot run code; a file that
    needs more raises CheckpointError saying so."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise CheckpointError(
                f"{path}: {_first_line(e)}: the file holds objects other than tensors and plain "
                "containers; if you trust it, load it with trust_pickle (export.py --trust-pickle)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {_first_line(e)}") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: {_first_line(e)}") from None


def safetensors_load(path):
    """Every tensor of a .safetensors file, on the CPU, read by the safetensors library."""
    try:
        return safetensors.torch.load_file(path, device="cpu")
    except safetensors.SafetensorError as e:
        raise CheckpointError(f"{path}: not a safetensors file: {_first_line(e)}") from None


class Loaded:
    """A loaded checkpoint: model (SEDD, float32, eval), config (dict), source (dict for
    sedd.json: kind, path, seed, step, weights_sha256, weights_file) and tokenizer_path
    (the checkpoint directory's tokenizer.json, or None)."""

    def __init__(self, model, config, source, tokenizer_path=None):
        self.model = model
        self.config = config
        self.source = source
        self.tokenizer_path = tokenizer_path


def _tokenizer_in(path):
    p = os.path.join(path, "tokenizer.json")
    return p if os.path.isfile(p) else None


def _unwrap_hf_config(cfg):
    # PyTorchModelHubMixin writes the init argument `config` as the whole file; some
    # versions nest it under a "config" key instead.
    if isinstance(cfg, dict) and "model" not in cfg and isinstance(cfg.get("config"), dict):
        return cfg["config"]
    return cfg


def load_hf_dir(path, trust_pickle=False):
    """Loads a HuggingFace-layout directory: config.json + model.safetensors (or pytorch_model.bin,
    unpickled safely unless trust_pickle)."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{path}: no config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = _unwrap_hf_config(json.load(f))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: not JSON: {e}") from None
    weights = next((os.path.join(path, w) for w in HF_WEIGHTS if os.path.isfile(os.path.join(path, w))), None)
    if weights is None:
        raise CheckpointError(f"{path}: no {' or '.join(HF_WEIGHTS)}")
    model = build_model(cfg)
    if weights.endswith(".safetensors"):
        state = safetensors_load(weights)
    else:
        state = torch_load(weights, trust_pickle)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    try:
        load_weights(model, state)
    except CheckpointError as e:
        raise CheckpointError(f"{weights}: {e}") from None
    source = {
        "kind": "huggingface",
        "path": os.path.basename(os.path.normpath(path)),
        "weights_file": os.path.basename(weights),
        "weights_sha256": file_sha256(weights),
        "seed": None,
        "step": None,
    }
    return Loaded(model.eval(), cfg, source, _tokenizer_in(path))


def _run_checkpoint(path):
    meta = os.path.join(path, RUN_CHECKPOINT)
    if os.path.isfile(meta):
        return meta
    # The reference also keeps checkpoints/checkpoint_{step}.pth snapshots: take the latest.
    snaps = []
    for p in glob.glob(os.path.join(path, "checkpoints", "checkpoint_*.pth")):
        m = re.fullmatch(r"checkpoint_(\d+)\.pth", os.path.basename(p))
        if m:
            snaps.append((int(m.group(1)), p))
    if snaps:
        return max(snaps)[1]
    raise CheckpointError(f"{path}: no {RUN_CHECKPOINT} and no checkpoints/checkpoint_N.pth")


def load_run_dir(path, use_ema=True, trust_pickle=False):
    """Loads a reference training-run directory (.hydra/config.yaml + checkpoints-meta/
    checkpoint.pth) with the EMA weights (use_ema False takes the raw model weights);
    trust_pickle as for torch_load."""
    cfg_path = os.path.join(path, RUN_CONFIG)
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{path}: no {RUN_CONFIG}")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise CheckpointError(f"{cfg_path}: not YAML: {e}") from None
    ckpt_path = _run_checkpoint(path)
    model = build_model(cfg)
    state = torch_load(ckpt_path, trust_pickle)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{ckpt_path}: no 'model' entry (keys: {sorted(state)[:8] if isinstance(state, dict) else type(state).__name__})")
    try:
        # The model weights carry the buffers; the EMA only the parameters.
        load_weights(model, state["model"])
        if use_ema:
            if "ema" not in state:
                raise CheckpointError("no 'ema' entry")
            apply_ema(model, state["ema"])
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt_path}: {e}") from None
    step = state.get("step")
    if torch.is_tensor(step):
        step = int(step.item())
    seed = cfg.get("training", {}).get("seed") if isinstance(cfg.get("training"), dict) else None
    source = {
        "kind": "training-run",
        "path": os.path.basename(os.path.normpath(path)),
        "weights_file": os.path.relpath(ckpt_path, path),
        "weights_sha256": file_sha256(ckpt_path),
        "weights": "ema" if use_ema else "model",
        "seed": seed if isinstance(seed, int) else None,
        "step": step if isinstance(step, int) else None,
    }
    return Loaded(model.eval(), cfg, source, _tokenizer_in(path))


def load_random(shape, seed, graph="absorb", time_independent=False):
    """A randomly initialised network of a named shape (see random_init); time_independent
    sets the config's model.time_independent (the network's time input held at 0)."""
    cfg = shape_config(shape, graph)
    if time_independent:
        cfg["model"]["time_independent"] = True
    model = random_init(build_model(cfg), seed)
    source = {"kind": "random-init", "path": None, "shape": shape, "seed": int(seed), "step": None,
              "weights_sha256": None}
    return Loaded(model.eval(), cfg, source, None)


def load_checkpoint(path, use_ema=True, trust_pickle=False):
    """Loads whichever checkpoint layout path holds: a training-run directory (with
    .hydra/config.yaml) or a HuggingFace-layout directory (with config.json). use_ema applies
    to training runs; trust_pickle lets .pth/.bin files unpickle arbitrary objects."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or directory")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a directory (give the checkpoint's directory)")
    if os.path.isfile(os.path.join(path, RUN_CONFIG)):
        return load_run_dir(path, use_ema=use_ema, trust_pickle=trust_pickle)
    if os.path.isfile(os.path.join(path, "config.json")):
        return load_hf_dir(path, trust_pickle=trust_pickle)
    raise CheckpointError(
        f"{path}: neither a HuggingFace model directory (config.json + {' or '.join(HF_WEIGHTS)}) "
        f"nor a training-run directory ({RUN_CONFIG} + {RUN_CHECKPOINT})"
    )
