#!/usr/bin/env bash
# Installs onnxruntime's Python API (the same 1.31.1 the evaluator loads) with numpy into a
# cache outside the clone, and prints its python. Only the evaluator benchmark uses it, to
# run the same ONNX files on the same batches through the Python API in the same run.
set -euo pipefail

pins=(onnxruntime==1.31.1 numpy==2.3.5)
cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
venv="$cache_root/onnxruntime-1.31.1"
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-onnxruntime"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "installing ${pins[*]} into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" >&2
  "$venv/bin/python" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__)" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
