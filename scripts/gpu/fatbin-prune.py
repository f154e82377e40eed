#!/usr/bin/env python3
"""Blank the GPU machine code a CUDA library carries for other GPUs than the ones kept.

  scripts/gpu/fatbin-prune.py IN OUT --keep 90[,89...]
  scripts/gpu/fatbin-prune.py --self-test

A CUDA shared library such as ONNX Runtime's libonnxruntime_providers_cuda.so
holds its kernels as fat binaries: for each group of kernels, one compiled
image (SASS, an ELF) per GPU architecture and sometimes PTX. The CUDA driver
loads only the image that matches the GPU it runs on. This tool zeroes the
payload of every SASS image for an architecture not in --keep, inside every fat
binary that still holds a kept image (or PTX) after that, and leaves every byte
outside those payloads as it was: same size, same offsets, same headers, so
the file is still the same ELF and the kept images are byte-identical. The
zeros compress to nothing, which makes the file far smaller to transfer.

It is meant for carrying the library to a machine whose GPU is known (an
H200 is sm_90), not for distribution: on any other GPU the pruned kernels are
missing. A fat binary whose layout this tool does not recognise is left as it
is, and counted.
"""
import argparse
import hashlib
import struct
import sys

MAGIC = 0xBA55ED50
KIND_PTX, KIND_ELF = 1, 2


def entries(data, start, size):
    """The (offset, kind, arch, header size, payload size) of each image of the
    fat binary whose entries span data[start:start+size], or None when they do
    not tile that span exactly."""
    out, j, end = [], start, start + size
    while j < end:
        if j + 32 > end:
            return None
        kind, _version, hsize, psize = struct.unpack_from("<HHIQ", data, j)
        if kind not in (KIND_PTX, KIND_ELF) or not 32 <= hsize <= 4096 or j + hsize + psize > end:
            return None
        arch = struct.unpack_from("<I", data, j + 28)[0]
        out.append((j, kind, arch, hsize, psize))
        j += hsize + psize
    return out if j == end else None


def prune(data, keep):
    """Zero the dropped images of data (a bytearray) in place; return a report."""
    report = {"fatbins": 0, "kept_whole": 0, "unrecognised": 0, "images_blanked": 0, "bytes_blanked": 0,
              "kept": {}, "dropped": {}}
    i = 0
    while True:
        i = data.find(struct.pack("<I", MAGIC), i)
        if i < 0:
            return report
        version, hsize, fsize = struct.unpack_from("<HHQ", data, i + 4)
        if version != 1 or hsize != 16 or i + hsize + fsize > len(data):
            i += 4
            continue
        report["fatbins"] += 1
        imgs = entries(data, i + hsize, fsize)
        if imgs is None:
            report["unrecognised"] += 1
            i += 4
            continue
        usable = [e for e in imgs if e[1] == KIND_PTX or e[2] in keep]
        if not usable:
            report["kept_whole"] += 1
        else:
            for off, kind, arch, eh, ps in imgs:
                key = f"{'ptx' if kind == KIND_PTX else 'sm'}_{arch}"
                if kind == KIND_ELF and arch not in keep:
                    data[off + eh:off + eh + ps] = bytes(ps)
                    report["images_blanked"] += 1
                    report["bytes_blanked"] += ps
                    report["dropped"][key] = report["dropped"].get(key, 0) + ps
                else:
                    report["kept"][key] = report["kept"].get(key, 0) + ps
        i += hsize + fsize


def _image(kind, arch, payload):
    """One fat-binary entry: a 64-byte header and its payload."""
    head = struct.pack("<HHIQIIII", kind, 0x0101, 64, len(payload), 0, len(payload), 0, arch)
    return head + bytes(64 - len(head)) + payload


def _fatbin(*imgs):
    body = b"".join(imgs)
    return struct.pack("<IHHQ", MAGIC, 1, 16, len(body)) + body


def self_test():
    """Prune a made-up library: three fat binaries (sm_80 + sm_90; sm_75 alone;
    PTX + sm_86) between other bytes, and a stray magic number."""
    sm80, sm90, sm75, ptx, sm86 = (bytes([v]) * 100 for v in (0x80, 0x90, 0x75, 0x11, 0x86))
    fb1 = _fatbin(_image(KIND_ELF, 80, sm80), _image(KIND_ELF, 90, sm90))
    fb2 = _fatbin(_image(KIND_ELF, 75, sm75))
    fb3 = _fatbin(_image(KIND_PTX, 70, ptx), _image(KIND_ELF, 86, sm86))
    stray = struct.pack("<IHHQ", MAGIC, 7, 16, 10)
    lib = b"\x7fELF" + bytes(60) + fb1 + b"host code" + fb2 + stray + fb3 + b"tail"
    data = bytearray(lib)
    rep = prune(data, {90})
    assert len(data) == len(lib), "the size changed"
    assert rep["fatbins"] == 3 and rep["kept_whole"] == 1 and rep["unrecognised"] == 0, rep
    assert rep["images_blanked"] == 2 and rep["bytes_blanked"] == 200, rep
    assert sm80 not in data and sm86 not in data, "a dropped image is still there"
    assert sm90 in data and sm75 in data and ptx in data, "a kept image is gone"
    changed = {i for i in range(len(lib)) if lib[i] != data[i]}
    blanked = {i for img in (sm80, sm86) for i in range(lib.index(img), lib.index(img) + len(img))}
    assert changed == blanked, "bytes outside the dropped payloads changed"
    print("fatbin-prune self-test: ok")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="?")
    ap.add_argument("dst", nargs="?")
    ap.add_argument("--keep", help="comma-separated SM architectures to keep, e.g. 90")
    ap.add_argument("--self-test", action="store_true", help="prune a made-up library and check the result")
    args = ap.parse_args(argv)
    if args.self_test:
        self_test()
        return
    if not (args.src and args.dst and args.keep):
        ap.error("give IN, OUT and --keep (or --self-test)")
    try:
        keep = {int(a) for a in args.keep.split(",") if a.strip()}
    except ValueError:
        ap.error(f"--keep {args.keep!r}: give SM numbers such as 90 or 80,90")
    if not keep:
        ap.error("--keep names no architecture")
    with open(args.src, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF":
        sys.exit(f"{args.src} is not an ELF file")
    size = len(data)
    rep = prune(data, keep)
    if rep["fatbins"] == 0:
        sys.exit(f"{args.src} holds no fat binary: nothing to prune")
    if rep["images_blanked"] == 0:
        sys.exit(f"{args.src}: no image for another architecture than {sorted(keep)} was found")
    assert len(data) == size
    with open(args.dst, "wb") as f:
        f.write(data)
    mib = 1 << 20
    print(f"{args.dst}: {rep['fatbins']} fat binaries; kept " +
          ", ".join(f"{k} {v / mib:.1f} MiB" for k, v in sorted(rep["kept"].items())) +
          "; blanked " + ", ".join(f"{k} {v / mib:.1f} MiB" for k, v in sorted(rep["dropped"].items())) +
          f" ({rep['images_blanked']} images); {rep['kept_whole']} without a kept image left whole, "
          f"{rep['unrecognised']} unrecognised left whole; sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
