#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh), builds the sedd CLI into bin/ and
# samples from the shipped model. Extra arguments go to `sedd sample`, e.g.
#   scripts/quickstart.sh --steps 256 --prefix "The jury said"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
go build -o bin/sedd ./cmd/sedd
echo "built bin/sedd; sampling from the shipped model:" >&2
exec bin/sedd sample "$@"
