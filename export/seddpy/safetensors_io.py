"""A small reader and writer for the safetensors format, without the safetensors package.

Layout of a .safetensors file: an 8-byte little-endian unsigned header length n, then n
bytes of UTF-8 JSON, then the raw tensor data. The JSON maps each tensor name to
{"dtype", "shape", "data_offsets": [begin, end]} (byte offsets into the data section,
row-major, little-endian); an optional "__metadata__" entry maps strings to strings.

Supported dtypes: F32, F16, BF16 and I64 (plus F64, I32, U8 and BOOL, which cost nothing).
BF16 is widened to float32 on read because numpy has no bfloat16.
"""

import json
import struct

import numpy as np
import torch

_NUMPY = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_TORCH_NAME = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}

# A header larger than this is certainly not a real safetensors file.
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not valid safetensors, or holds a dtype this reader does not know."""


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, byte offset of the data section)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SafetensorsError(f"{path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise SafetensorsError(f"{path}: header length {n} is implausible")
        raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(f"{path}: header truncated ({len(raw)} of {n} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def load_file(path):
    """Reads every tensor of a .safetensors file into a dict name -> torch.Tensor (CPU).

    BF16 tensors come back as float32 (exactly: bfloat16 is the top half of a float32).
    """
    header, _, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(0, 2)
        data_len = f.tell() - start
        out = {}
        for name, info in header.items():
            try:
                dtype, shape = info["dtype"], [int(s) for s in info["shape"]]
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise SafetensorsError(f"{path}: tensor {name!r}: bad header entry {info!r}") from None
            count = int(np.prod(shape, dtype=np.int64))
            itemsize = 2 if dtype == "BF16" else (_NUMPY[dtype].itemsize if dtype in _NUMPY else None)
            if itemsize is None:
                raise SafetensorsError(f"{path}: tensor {name!r}: unsupported dtype {dtype}")
            if not 0 <= begin <= end <= data_len or end - begin != count * itemsize:
                raise SafetensorsError(
                    f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] do not hold "
                    f"{count} x {dtype} inside {data_len} data bytes"
                )
            f.seek(start + begin)
            buf = f.read(end - begin)
            if dtype == "BF16":
                half = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
                arr = half.view(np.float32)
            else:
                arr = np.frombuffer(buf, dtype=_NUMPY[dtype])
            out[name] = torch.from_numpy(arr.reshape(shape).copy())
    return out


def save_file(tensors, path, metadata=None):
    """Writes a dict name -> torch.Tensor as .safetensors (tensors sorted by name, 8-byte aligned header)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _TORCH_NAME:
            raise SafetensorsError(f"tensor {name!r}: unsupported dtype {t.dtype}")
        if t.dtype == torch.bfloat16:
            raw = (t.view(torch.int16).numpy().astype("<i2")).tobytes()
        else:
            raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _TORCH_NAME[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
