#!/usr/bin/env bash
# Installs a pinned Python environment into a cache outside the clone and prints its python:
#   torch        PyTorch 2.11.0 (the version libtorch is pinned to) with its full CUDA
#                dependency set, ~4.6 GB; the trainer benchmark times the same model in it.
#   onnxruntime  onnxruntime 1.31.1 (the runtime the evaluator loads) with numpy; the
#                evaluator benchmark runs the same ONNX files on the same batches through it.
#   client       what the Python customer of docs/examples needs (nats-py, protobuf,
#                cryptography) plus grpcio-tools for protoc; tests/customer_result.rs runs it.
# `make bench` installs the first two; `make test` the third (a few MB).
set -euo pipefail

case "${1:-}" in
  torch) name=pytorch-2.11.0 pins=(torch==2.11.0) check="import torch; print('PyTorch', torch.__version__)" ;;
  onnxruntime) name=onnxruntime-1.31.1 pins=(onnxruntime==1.31.1 numpy==2.3.5)
    check="import onnxruntime; print('onnxruntime', onnxruntime.__version__)" ;;
  client) name=python-client-1 pins=(nats-py==2.10.0 protobuf==5.29.3 cryptography==44.0.0 grpcio-tools==1.71.0)
    check="import nats, google.protobuf, cryptography, grpc_tools; print('python client ready')" ;;
  *) echo "usage: $0 torch|onnxruntime|client" >&2; exit 2 ;;
esac

cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
venv="$cache_root/$name"
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$name"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "installing ${pins[*]} into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" >&2
  "$venv/bin/python" -c "$check" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
