#!/usr/bin/env bash
# Runs the whole test suite (scripts/test.sh) from a fresh clone whose path holds a
# space, once per machine variation that has broken a test before: other OpenBLAS
# kernels, other torch CPU kernels, one Go processor, another home directory and
# locale, and (variation 6, which needs qemu-user) ONNX Runtime's AVX2 kernels, where
# the int8 variant's arithmetic differs most. A float32 or float64 result computed on one machine is not bit-identical
# on another, so every test must compare numbers within the precision that produced
# them; this script is how to check that without another machine. Not part of CI
# (it takes about 5 minutes per variation on 2 cores).
#
#   scripts/test-portability.sh            # every variation
#   scripts/test-portability.sh 2 4        # only variations 2 and 4 (numbered below)
#
# FUZZTIME (default 2s here) bounds each fuzz target. Logs go to the clone's parent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# variation N: the environment of one run (NAME=value words).
variation() {
  case "$1" in
    1) env_=() ;;                                                      # as this machine is
    2) env_=(OPENBLAS_CORETYPE=Haswell) ;;                             # other OpenBLAS float32 kernels
    3) env_=(OPENBLAS_CORETYPE=Zen ATEN_CPU_CAPABILITY=default) ;;     # and torch without AVX2 kernels
    4) env_=(GOMAXPROCS=1 OPENBLAS_CORETYPE=Sandybridge) ;;            # one Go processor
    5) env_=(ATEN_CPU_CAPABILITY=avx512 LC_ALL=C TZ=Pacific/Kiritimati "HOME=$work/home dir") ;; # other home, locale, zone
    6) env_=() ;;  # ONNX Runtime's AVX2 kernels instead of AVX-512: the SDK's golden and variant tests under qemu -cpu Haswell
    *) echo "portability: no variation $1 (1-6)" >&2; exit 2 ;;
  esac
}

work="$(mktemp -d)"
clone="$work/sedd clone"
git clone -q "$root" "$clone"
git -C "$clone" checkout -q "$(git -C "$root" rev-parse HEAD)"
mkdir -p "$work/home dir"
echo "portability: clone at $clone (HEAD $(git -C "$clone" rev-parse --short HEAD))" >&2

pick=("$@")
if ((${#pick[@]} == 0)); then pick=(1 2 3 4 5 6); fi
failed=()
for i in "${pick[@]}"; do
  variation "$i"
  log="$work/variation-$i.log"
  echo "portability: variation $i: ${env_[*]:-(none)}" >&2
  start=$SECONDS
  if [[ $i == 6 ]]; then
    # The test binary runs on an emulated Haswell (AVX2, no AVX-512), so ONNX Runtime picks
    # other float32 and int8 kernels; the tests compare each graph with its own tolerance.
    cmd=(bash -c 'command -v qemu-x86_64 >/dev/null || { echo "variation 6 needs qemu-x86_64 (apt-get install qemu-user)"; exit 1; }
      scripts/install-onnxruntime.sh && go test -count=1 -exec "qemu-x86_64 -cpu Haswell" \
        -run "TestVerifyFixtures|TestEveryGraphVerifiesWithItsOwnTolerance|TestInt8CostsLittleOnTheTinyModel|TestGraphCache$" ./sdk/')
  else
    cmd=(scripts/test.sh)
  fi
  if (cd "$clone" && env FUZZTIME="${FUZZTIME:-2s}" "${env_[@]}" "${cmd[@]}") >"$log" 2>&1; then
    echo "portability: variation $i passed in $((SECONDS - start)) s" >&2
  else
    echo "portability: variation $i FAILED after $((SECONDS - start)) s; log: $log" >&2
    tail -n 30 "$log" >&2
    failed+=("$i")
  fi
done
if ((${#failed[@]})); then
  echo "portability: failed variations: ${failed[*]} (logs in $work)" >&2
  exit 1
fi
echo "portability: all variations passed (logs in $work)" >&2
