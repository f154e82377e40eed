#!/usr/bin/env bash
# Installs Microsoft's ONNX Runtime CPU shared library into third_party/onnxruntime/
# without root, and a copy into the per-user data directory
# (${XDG_DATA_HOME:-~/.local/share}/sedd/onnxruntime/, SEDD_NO_USER_INSTALL=1 skips it)
# that the SDK also searches. The library comes out of the npm package onnxruntime-node, which
# carries the official Linux x64 build; the package's install script (which tries to
# download CUDA parts) is never run. Idempotent: does nothing when the pinned
# version is already in place.
#
# Users on other platforms: download the release archive for your platform from
# ONNX Runtime's GitHub releases and point ONNXRUNTIME_SHARED_LIBRARY_PATH (or the
# --ort-lib flag, or sdk.WithLibraryPath) at its lib/libonnxruntime.so* file.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.30.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/third_party/onnxruntime"
lib="$dest/libonnxruntime.so"

# The per-user copy lets a `go install`ed sedd find the library from any directory.
user_dir="${XDG_DATA_HOME:-$HOME/.local/share}/sedd/onnxruntime"
install_user_copy() {
  if [[ "${SEDD_NO_USER_INSTALL:-}" == 1 ]]; then return; fi
  if [[ -f "$user_dir/VERSION" && "$(cat "$user_dir/VERSION")" == "$ORT_VERSION" && -f "$user_dir/libonnxruntime.so" ]]; then return; fi
  if mkdir -p "$user_dir" 2>/dev/null && cp "$lib" "$user_dir/libonnxruntime.so.tmp" 2>/dev/null; then
    mv "$user_dir/libonnxruntime.so.tmp" "$user_dir/libonnxruntime.so"
    echo "$ORT_VERSION" > "$user_dir/VERSION"
    echo "onnxruntime $ORT_VERSION also copied to $user_dir (found by sedd from any directory)" >&2
  else
    echo "install-onnxruntime: could not write $user_dir; sedd outside this tree will need ONNXRUNTIME_SHARED_LIBRARY_PATH=$lib" >&2
  fi
}

if [[ -f "$dest/VERSION" && "$(cat "$dest/VERSION")" == "$ORT_VERSION" && -f "$lib" ]]; then
  echo "onnxruntime $ORT_VERSION already installed at $lib" >&2
  install_user_copy
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "install-onnxruntime: only Linux x86_64 is automated; get ONNX Runtime $ORT_VERSION for your platform from its GitHub releases and set ONNXRUNTIME_SHARED_LIBRARY_PATH" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "install-onnxruntime: npm is needed (apt-get install -y npm)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "onnxruntime-node@$ORT_VERSION" --ignore-scripts --silent >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/
mkdir -p "$dest"
cp "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$ORT_VERSION" > "$dest/VERSION"
echo "onnxruntime $ORT_VERSION installed at $lib" >&2
install_user_copy
