#!/usr/bin/env bash
# Creates the project's Python environment, .venv/ at the repository root, with the packages of
# export/requirements.txt at the versions of its tested pin set, export/requirements.lock.
# Everything that runs Python in this project runs .venv/bin/python.
#
#   scripts/install-python-env.sh                                   # .venv/ from requirements.lock
#   scripts/install-python-env.sh .venv-min export/requirements-min.lock   # the lower-bound set
#
# Idempotent: VENV/.requirements.sha256 holds the SHA-256 of requirements.txt and the lock once
# an install has finished; when it matches, nothing is done. Otherwise the environment is made
# again from scratch, so that nothing of an older pin set stays behind.
#
# The interpreter: $SEDD_PYTHON if set, else python3 on PATH; it must be CPython 3.10 or newer
# with the venv and ensurepip modules (Debian: the python3-venv package, which scripts/setup.sh
# installs). The torch wheel on the package registry is its CUDA build: the download is about
# 3 GB and the environment 6-7 GB, whether or not the machine has a GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${1:-.venv}"
lock="${2:-export/requirements.lock}"
req="export/requirements.txt"
stamp="$venv/.requirements.sha256"
case "$venv" in
  /* | *..* | "") echo "install-python-env: $venv: give a directory inside the repository (it is deleted and made again)" >&2; exit 2 ;;
esac
py="${SEDD_PYTHON:-python3}"

want="$(cat "$req" "$lock" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c '' 2>/dev/null; then
  echo "python environment $venv matches $lock" >&2
  exit 0
fi

if ! command -v "$py" >/dev/null; then
  echo "install-python-env: $py not found; install Python 3.10 or newer (Debian: apt-get install python3 python3-venv) or set SEDD_PYTHON" >&2
  exit 1
fi
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "install-python-env: $py is Python $("$py" -c 'import platform; print(platform.python_version())'); torch needs 3.10 or newer (set SEDD_PYTHON)" >&2
  exit 1
fi
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "install-python-env: $py has no venv/ensurepip module (Debian: apt-get install python3-venv)" >&2
  exit 1
fi

# Disk space, checked before anything is deleted or downloaded. The lock states what its
# environment takes once installed ("# installed-mb: N", measured); on top of that, pip holds
# the wheel it is installing (the largest, cudnn's or torch's, is under 1 GB) in its temp
# directory, because the big wheels are installed one at a time below. pip's download cache
# would keep another ~3 GB; it is left off when the disk is tight. Exit status 3 means "not
# enough space" (scripts/test.sh can then skip the lower-bound leg instead of failing).
installed_mb="$(sed -n 's/^# installed-mb: *\([0-9][0-9]*\).*/\1/p' "$lock" | head -1)"
installed_mb="${installed_mb:-7500}"
need_mb=$((installed_mb + 1200))
avail_mb() { df -Pm "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
device_of() { df -P "$1" 2>/dev/null | awk 'NR == 2 { print $1 }'; }
gb() { echo "$(($1 / 1024)).$(($1 % 1024 * 10 / 1024))"; }
mkdir -p "$(dirname "$venv")"
free_mb="$(avail_mb "$(dirname "$venv")")"
old_mb=0
[[ -d "$venv" ]] && old_mb="$(du -sm "$venv" 2>/dev/null | cut -f1)"
tmp_dir="${TMPDIR:-/tmp}"
if [[ -n "$free_mb" ]]; then
  if ((free_mb + old_mb < need_mb)); then
    echo "install-python-env: $venv needs about $(gb "$need_mb") GB of disk ($installed_mb MB installed, measured, plus the wheel being installed); $root has $free_mb MB free$( ((old_mb > 0)) && echo " and the old $venv, which this replaces, holds $old_mb MB"). Free some space and run this again." >&2
    exit 3
  fi
  tmp_free="$(avail_mb "$tmp_dir")"
  if [[ -n "$tmp_free" && "$(device_of "$tmp_dir")" != "$(device_of "$(dirname "$venv")")" ]] && ((tmp_free < 1200)); then
    echo "install-python-env: pip unpacks each wheel in $tmp_dir, which has $tmp_free MB free; it needs about 1.2 GB. Set TMPDIR to a directory with room and run this again." >&2
    exit 3
  fi
fi
cache_flag=()
if [[ -n "$free_mb" ]] && ((free_mb + old_mb < need_mb + 4096)); then
  cache_flag=(--no-cache-dir)
  echo "install-python-env: $free_mb MB free: pip's download cache is left off" >&2
fi

start=$SECONDS
rm -rf "$venv"
echo "install-python-env: creating $venv with $(command -v "$py") ($("$py" -c 'import platform; print(platform.python_version())')) from $lock (about 3 GB to download, $(gb "$installed_mb") GB installed)" >&2
"$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q "${cache_flag[@]}")
# The big wheels first, one per pip call, each pinned by the lock and without its dependencies
# (the last call resolves those): pip downloads every wheel of a call before it installs any,
# so one call for everything would hold all ~3.5 GB of them in its temp directory at once.
while IFS= read -r pin; do
  "${pip[@]}" --no-deps "$pin"
done < <(grep -E '^(torch|triton|nvidia-[a-z0-9-]+)==' "$lock")
"${pip[@]}" -r "$req" -c "$lock"
"$venv/bin/python" -m pip check >&2
echo "$want" > "$stamp"
echo "install-python-env: $venv done in $((SECONDS - start)) s: $("$venv/bin/python" -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)')" >&2
