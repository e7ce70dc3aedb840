#!/usr/bin/env bash
# Installs a pinned Python environment into a cache outside the clone and prints its python:
#   torch        PyTorch 2.11.0 (the version libtorch is pinned to) with its full CUDA
#                dependency set, ~4.6 GB; the trainer benchmark times the same model in it.
#   onnxruntime  onnxruntime 1.31.1 (the runtime the evaluator loads) with numpy; the
#                evaluator benchmark runs the same ONNX files on the same batches through it.
#   client       what the Python customer of docs/examples needs (nats-py, protobuf,
#                cryptography) plus grpcio-tools for protoc; tests/customer_result.rs runs it.
#   transformers Hugging Face transformers 4.57.1 layered on the torch environment (which it
#                installs first; a .pth file makes its packages visible, ~60 MB more); the
#                trainer's HF parity test (tests/hf_parity.rs) compares logits with it.
# `make bench` installs torch, onnxruntime and transformers; `make test` the client (a few MB).
# With GRADIENTS_PYTHON_ENV_NO_INSTALL=1 an environment not installed yet is not installed:
# the script exits 3 (a test that needs a large environment skips, loudly, instead).
set -euo pipefail

case "${1:-}" in
  torch) name=pytorch-2.11.0 pins=(torch==2.11.0) check="import torch; print('PyTorch', torch.__version__)" ;;
  onnxruntime) name=onnxruntime-1.31.1 pins=(onnxruntime==1.31.1 numpy==2.3.5)
    check="import onnxruntime; print('onnxruntime', onnxruntime.__version__)" ;;
  client) name=python-client-1 pins=(nats-py==2.10.0 protobuf==5.29.3 cryptography==44.0.0 grpcio-tools==1.71.0)
    check="import nats, google.protobuf, cryptography, grpc_tools; print('python client ready')" ;;
  transformers) name=transformers-4.57.1
    pins=(transformers==4.57.1 numpy==2.3.5 safetensors==0.8.0 tokenizers==0.22.2 huggingface_hub==0.36.2)
    check="import torch, transformers; print('transformers', transformers.__version__, 'on PyTorch', torch.__version__)" ;;
  *) echo "usage: $0 torch|onnxruntime|client|transformers" >&2; exit 2 ;;
esac

cache_root=${GRADIENTS_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradients}
venv="$cache_root/$name"
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock-$name"
flock 9
if [ ! -f "$venv/.complete" ]; then
  if [ "${GRADIENTS_PYTHON_ENV_NO_INSTALL:-}" = 1 ]; then
    echo "$venv is not installed (run: bash scripts/python-env.sh $1)" >&2
    exit 3
  fi
  # The layered environment needs the torch one, installed (and complete) first.
  base_python=
  if [ "$1" = transformers ]; then base_python=$(bash "$0" torch); fi
  echo "installing ${pins[*]} into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  if [ -n "$base_python" ]; then
    purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
    "$base_python" -c "$purelib" > "$("$venv/bin/python" -c "$purelib")/gradients-torch-env.pth"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" >&2
  "$venv/bin/python" -c "$check" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
