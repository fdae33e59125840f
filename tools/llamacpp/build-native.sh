#!/usr/bin/env bash
# Builds llama.cpp's own tools natively (-DGGML_NATIVE=ON) from the llama.cpp source node-llama-cpp ships
# (node_modules/node-llama-cpp/llama/gitRelease.bundle: the release its prebuilt binaries come from), for
# `LLAMA_CPP_BIN=<dir> npm run bench:infer` (a native-build peer next to node-llama-cpp's prebuilt one) and for checking
# export-gguf files by hand (llama-simple, llama-tokenize, llama-bench). No network needed; ~10 minutes on 2 cores.
#
#   bash tools/llamacpp/build-native.sh [dest-dir]     (default: ${TMPDIR:-/tmp}/llama.cpp-native)
#
# Prints the directory holding the binaries on its last line.
#
# Caveat: -march=native compiles ggml's AMX kernels when the CPU reports AMX; in a VM that does not grant AMX state
# (this Firecracker VM, 2026-12-02) q8_0 models then die with SIGILL (convert_hf_to_gguf's own q8_0 files too), while
# f32 / f16 / bf16 models run. node-llama-cpp's prebuilt binaries run q8_0 here (tools/test/llamacpp.test.ts).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="$root/node_modules/node-llama-cpp/llama/gitRelease.bundle"
dest="${1:-${TMPDIR:-/tmp}/llama.cpp-native}"
[ -f "$bundle" ] || { echo "build-native: $bundle is missing; run npm ci first" >&2; exit 1; }
command -v cmake >/dev/null && command -v c++ >/dev/null || { echo "build-native: needs cmake and a C++ compiler (apt-get install cmake g++)" >&2; exit 1; }
if [ ! -d "$dest/.git" ]; then
  rm -rf "$dest.tmp"
  git clone --quiet "$bundle" "$dest.tmp"
  mv "$dest.tmp" "$dest"
fi
cmake -S "$dest" -B "$dest/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$dest/build" -j"$(nproc)" --target llama-batched-bench llama-bench llama-simple llama-tokenize >/dev/null
echo "$dest/build/bin"
