#!/usr/bin/env bash
# Installs PyTorch 2.11.0 (the version libtorch is pinned to), with its full CUDA
# dependency set, into a cache outside the clone, and prints its python. Only the trainer
# benchmark uses it, to time the same model in PyTorch in the same run; it is ~4.6 GB, so
# `make test` and `make demo` do not install it (`make bench` does).
set -euo pipefail

pin="torch==2.11.0"
cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
venv="$cache_root/pytorch-2.11.0"
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-pytorch"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "installing $pin (about 4.6 GB) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$pin" >&2
  "$venv/bin/python" -c "import torch; print('PyTorch', torch.__version__)" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
