#!/usr/bin/env bash
# Builds envrepro.c and runs it against LIB (default: the project's install)
# with command lines and environments of growing size, with and without
# ONNX Runtime's telemetry, at several log levels. Prints one line per run:
# the setting and "ok" or the signal that killed the process.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="${1:-$here/../../../../../third_party/onnxruntime/libonnxruntime.so}"
inc="$(cd "$here" && go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go)"
bin="$(mktemp -d)/envrepro"
cc -O1 -o "$bin" "$here/envrepro.c" -ldl -I "$inc" || exit 1
pad() { head -c "$1" /dev/zero | tr '\0' x; }
run() { # label, then the command
  local label="$1"; shift
  out="$("$@" 2>&1)"; rc=$?; out="${out##*$'\n'}"
  if ((rc > 128)); then res="killed by signal $((rc - 128))"; elif ((rc == 0)); then res="$out"; else res="exit $rc: $out"; fi
  printf '%-58s %s\n' "$label" "$res"
}
for tele in "" 1; do
  for kb in 1 28 30 60 100; do
    for level in 3 0; do
      label="telemetry $([[ -n "$tele" ]] && echo off || echo on), argv ${kb} KB, log level $level"
      if [[ -n "$tele" ]]; then
        run "$label" env ORT_DISABLE_TELEMETRY=1 "$bin" "$lib" "$level" "$(pad $((kb * 1024)))"
      else
        run "$label" env -u ORT_DISABLE_TELEMETRY "$bin" "$lib" "$level" "$(pad $((kb * 1024)))"
      fi
    done
  done
  label="telemetry $([[ -n "$tele" ]] && echo off || echo on), environment variable of 100 KB"
  if [[ -n "$tele" ]]; then
    run "$label" env ORT_DISABLE_TELEMETRY=1 BIG="$(pad 102400)" "$bin" "$lib"
  else
    run "$label" env -u ORT_DISABLE_TELEMETRY BIG="$(pad 102400)" "$bin" "$lib"
  fi
done
