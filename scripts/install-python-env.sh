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

start=$SECONDS
rm -rf "$venv"
echo "install-python-env: creating $venv with $(command -v "$py") ($("$py" -c 'import platform; print(platform.python_version())')) from $lock (about 3 GB to download)" >&2
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$req" -c "$lock"
"$venv/bin/python" -m pip check >&2
echo "$want" > "$stamp"
echo "install-python-env: $venv done in $((SECONDS - start)) s: $("$venv/bin/python" -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)')" >&2
