#!/usr/bin/env bash
# The demo: a private nats-server, intake and dispatch on ports of their own, SQLite files
# in a temporary folder, and tasks through the system: one accepted and split, a broken one
# refused with the row and column named, get and list; then a small base model pretrained
# here, two trainers (miners with different strategies) joining the market, and a
# generated task fine-tuned by both, each submitting a signed ONNX model with its report.
# Everything stops on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
gradients="$root/target/debug/gradients"
nats_server="$root/.deps/py/bin/nats-server"
work=$(mktemp -d -t gradients-demo.XXXXXX)
pids=()
cleanup() {
  # Services first, newest first, while NATS is still up to drain into; then nats-server.
  # Anything still running after 15 s is killed.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pids[$i]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -n "${KEEP_DEMO:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

nats_port=$(free_port)
http_port=$(free_port)
export GRADIENTS__NATS__URL="nats://127.0.0.1:$nats_port"
export GRADIENTS__STORE__URL="sqlite://$work/gradients.db?mode=rwc"
export GRADIENTS__INTAKE__HTTP_ADDR="127.0.0.1:$http_port"
export GRADIENTS__TELEMETRY__LOG_FILTER="warn,gradients_intake=info"

step "starting nats-server $("$nats_server" --version | awk '{print $2}') with JetStream on port $nats_port"
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/jetstream" >"$work/nats.log" 2>&1 &
pids+=($!)
# Services refuse to start without their bus: wait until nats-server listens.
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $nats_port), 0.5).close()" 2>/dev/null && break
  sleep 0.1
done

step "starting intake (metrics and health on http://127.0.0.1:$http_port)"
"$gradients" serve intake >"$work/intake.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$http_port/readyz', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.2
done
python3 -c "import urllib.request; print('readyz:', urllib.request.urlopen('http://127.0.0.1:$http_port/readyz').read().decode())"

step "a customer key: every task request is signed with it; tasks belong to its customer id"
export GRADIENTS__INTAKE__CUSTOMER_KEY_FILE="$work/customer.key"
"$gradients" customer keygen --out "$work/customer.key"

step "submitting examples/tasks/capitals (120 rows, instruct, columns question/answer)"
"$gradients" task submit --dir examples/tasks/capitals --idempotency-key demo-capitals
task_id=$("$gradients" task submit --dir examples/tasks/capitals --idempotency-key demo-capitals --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

step "the same submit retried with the same idempotency key returns the same task"
"$gradients" task submit --dir examples/tasks/capitals --idempotency-key demo-capitals | head -2

step "a broken data set is refused, naming the row and column"
"$gradients" task submit --dir examples/tasks/broken-columns || true

step "task get $task_id --json (the splits live in object stores; test is hidden from miners)"
"$gradients" task get "$task_id" --json

step "task list"
"$gradients" task list

step "pretraining the base model tiny-1m on the generated corpus"
"$gradients" model pretrain --preset tiny-1m --out "$work/models/tiny-1m" --steps 300 --corpus-bytes 1000000 --device cpu

dispatch_http=$(free_port)
step "starting dispatch (metrics and health on http://127.0.0.1:$dispatch_http)"
GRADIENTS__STORE__URL="sqlite://$work/dispatch.db?mode=rwc" GRADIENTS__DISPATCH__HTTP_ADDR="127.0.0.1:$dispatch_http" \
  GRADIENTS__DISPATCH__KEY_FILE="$work/dispatch.key" GRADIENTS__DISPATCH__MIN_MINERS_PER_TASK=2 \
  "$gradients" serve dispatch >"$work/dispatch.log" 2>&1 &
pids+=($!)

step "two trainers join the market: strategies fixed (the AutoTrain baseline) and lr-range-test"
for strategy in fixed lr-range-test; do
  GRADIENTS__DISPATCH__KEY_FILE="$work/dispatch.key" GRADIENTS__TRAINER__KEY_FILE="$work/$strategy.key" \
    GRADIENTS__TRAINER__MODELS_DIR="$work/models" GRADIENTS__TRAINER__WORK_DIR="$work/runs-$strategy" \
    GRADIENTS__TRAINER__STRATEGY="$strategy" GRADIENTS__TRAINER__DEVICE=cpu GRADIENTS__TRAINER__MAX_STEPS=150 \
    GRADIENTS__TELEMETRY__LOG_FILTER="warn,gradients_trainer=info" \
    "$root/target/debug/gradients-trainer" serve >"$work/trainer-$strategy.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  [ "$("$gradients" miner list --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = 2 ] && break
  sleep 0.2
done
"$gradients" miner list

step "a generated task family (reverse-word, 300 rows, base model tiny-1m) submitted by a customer"
"$gradients" data generate --out "$work/tasks" --family reverse-word --base-model tiny-1m
market_task=$("$gradients" task submit --dir "$work/tasks/reverse-word" --idempotency-key demo-market --hours 0.5 --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "task $market_task"

step "both trainers fine-tune it (150 optimizer steps each on CPU) and submit"
for strategy in fixed lr-range-test; do
  for _ in $(seq 1 900); do
    grep -q "submitted" "$work/trainer-$strategy.log" && break
    sleep 0.2
  done
  python3 - "$work/runs-$strategy/$market_task/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
run = r["run"]
curve = run["validation_curve"]
print(f'{r["strategy"]:>14}: {run["steps"]} steps, {len(r["trials"])} trial(s), validation loss '
      f'{curve[0]["loss"]:.3f} -> best {run["best_validation_loss"]:.3f}, '
      f'lr {run["hyperparameters"]["learning_rate"]:.2e}, {r["tokens_per_second"]:.0f} tokens/s')
PY
done
echo "reports, loss plots (loss.svg) and ONNX models are in $work/runs-*/$market_task/ until the demo exits"
"$gradients" task get "$market_task" | head -4

step "logs"
tail -n 3 "$work/intake.log" "$work/dispatch.log" "$work/trainer-fixed.log" "$work/trainer-lr-range-test.log"
