#!/usr/bin/env bash
# The demo: the whole market on this machine, every service its own process as production
# runs them. A private nats-server; a small base model pretrained here and published to the
# gradients-models store; intake, dispatch, the evaluator, the ledger and the audit
# (`gradients serve <name>`, SQLite files in a temporary folder); four trainers (miners)
# with different strategies, one of them running the fixed AutoTrain recipe as the
# market's baseline; a generated task submitted by a customer and followed live with
# `task watch`; then `task result` with the ranking, rewards and confidences, the winning
# model downloaded and checked, and the audit verified and reconciled against the ledger;
# then a GRPO task (arithmetic prompts, reward functions) through the same market.
# Everything runs in a temporary folder outside the clone and stops on exit (KEEP_DEMO=1
# keeps the folder).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
gradients="$root/target/debug/gradients"
trainer="$root/target/debug/gradients-trainer"
nats_server="$root/.deps/py/bin/nats-server"
# Small on purpose: the whole demo runs in minutes on a 2-core CPU.
steps=${DEMO_STEPS:-40}
rows=${DEMO_ROWS:-200}
strategies=(fixed lr-range-test random successive-halving)
work=$(mktemp -d -t gradients-demo.XXXXXX)
pids=()
cleanup() {
  # Newest first (trainers, then services), while NATS is still up to drain into; then
  # nats-server. Each is asked to stop (SIGTERM) and killed if still there after 15 s.
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
step() { printf '\n\033[1m== %s\033[0m  (%ds)\n' "$*" "$SECONDS"; }
ready() { # waits for a service's /readyz
  for _ in $(seq 1 300); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$1/readyz', timeout=1)" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$2 did not become ready; its log:" >&2; tail -n 20 "$work/$2.log" >&2; return 1
}
serve() { # serve NAME [VAR=VALUE...]: one service as its own process, logging to $work/NAME.log
  local name=$1; shift
  local port; port=$(free_port)
  local upper; upper=$(echo "$name" | tr a-z A-Z)
  env "GRADIENTS__${upper}__HTTP_ADDR=127.0.0.1:$port" "$@" "$gradients" serve "$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
  ready "127.0.0.1:$port" "$name"
  echo "$name ready (pid ${pids[-1]}, health and metrics on http://127.0.0.1:$port)"
}

# The evaluator loads ONNX Runtime at run time (cargo sets this for its own runs only).
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(ls "$root"/.deps/py/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
  export ORT_DYLIB_PATH
fi

nats_port=$(free_port)
export GRADIENTS__NATS__URL="nats://127.0.0.1:$nats_port"
export GRADIENTS__TELEMETRY__LOG_FILTER="warn"
# One key file per signing service, read by every party that verifies it.
export GRADIENTS__DISPATCH__KEY_FILE="$work/keys/dispatch.key"
export GRADIENTS__EVALUATOR__KEY_FILE="$work/keys/evaluator.key"
export GRADIENTS__AUDIT__KEY_FILE="$work/keys/audit.key"
export GRADIENTS__INTAKE__CUSTOMER_KEY_FILE="$work/keys/customer.key"
mkdir -p "$work/keys"

step "starting nats-server $("$nats_server" --version | awk '{print $2}') with JetStream on port $nats_port"
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/jetstream" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $nats_port), 0.5).close()" 2>/dev/null && break
  sleep 0.1
done

step "keys: dispatch, the evaluator and the audit sign what they publish; a customer signs its requests"
for service in dispatch evaluator audit; do "$gradients" miner keygen --out "$work/keys/$service.key" >/dev/null; done
"$gradients" customer keygen --out "$work/keys/customer.key"

step "pretraining the base model tiny-1m on the generated corpus, then publishing it to gradients-models"
if [ -n "${DEMO_BASE_MODEL:-}" ]; then # a folder pretrained earlier, to run the demo again quickly
  mkdir -p "$work/models" && cp -r "$DEMO_BASE_MODEL" "$work/models/tiny-1m"
else
  "$gradients" model pretrain --preset tiny-1m --out "$work/models/tiny-1m" --steps "${DEMO_PRETRAIN_STEPS:-80}" \
    --batch-size 8 --corpus-bytes 300000 --device cpu
fi
"$gradients" model publish "$work/models/tiny-1m" --name tiny-1m
"$gradients" model list

step "four miners: one key each; the one running the fixed recipe is the market's baseline"
declare -A miner_ids
for strategy in "${strategies[@]}"; do
  miner_ids[$strategy]=$("$gradients" miner keygen --out "$work/keys/miner-$strategy.key" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["miner_id"])')
  echo "$strategy: ${miner_ids[$strategy]}"
done

step "starting every service as its own process: intake, dispatch, evaluator, ledger, audit"
serve intake "GRADIENTS__STORE__URL=sqlite://$work/intake.db?mode=rwc"
serve dispatch "GRADIENTS__STORE__URL=sqlite://$work/dispatch.db?mode=rwc" \
  GRADIENTS__DISPATCH__MIN_MINERS_PER_TASK=${#strategies[@]} GRADIENTS__DISPATCH__MAX_MINERS_PER_TASK=${#strategies[@]}
serve evaluator "GRADIENTS__EVALUATOR__MODELS_DIR=$work/evaluator-models"
serve ledger "GRADIENTS__STORE__URL=sqlite://$work/ledger.db?mode=rwc" \
  "GRADIENTS__LEDGER__BASELINE_MINERS=${miner_ids[fixed]}"
serve audit "GRADIENTS__AUDIT__STORE_URL=sqlite://$work/audit.db?mode=rwc" GRADIENTS__AUDIT__CHECKPOINT_INTERVAL_MS=1000

step "four trainers join the market (${strategies[*]}; $steps optimizer steps each, CPU)"
for strategy in "${strategies[@]}"; do
  GRADIENTS__TRAINER__KEY_FILE="$work/keys/miner-$strategy.key" GRADIENTS__TRAINER__MODELS_DIR="$work/models" \
    GRADIENTS__TRAINER__WORK_DIR="$work/runs-$strategy" GRADIENTS__TRAINER__STRATEGY="$strategy" \
    GRADIENTS__TRAINER__DEVICE=cpu GRADIENTS__TRAINER__MAX_STEPS="$steps" OMP_NUM_THREADS=1 \
    GRADIENTS__TELEMETRY__LOG_FILTER="warn,gradients_trainer=info" \
    "$trainer" serve >"$work/trainer-$strategy.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 300); do
  [ "$("$gradients" miner list --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = ${#strategies[@]} ] && break
  sleep 0.2
done
"$gradients" miner list

step "a customer submits a generated task (reverse-word, $rows rows, instruct, base model tiny-1m)"
"$gradients" data generate --out "$work/tasks" --family reverse-word --rows "$rows" --base-model tiny-1m
task=$("$gradients" task submit --dir "$work/tasks/reverse-word" --idempotency-key demo-market --hours 0.5 --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "task $task"

step "gradients task watch $task: accepted -> dispatching -> training -> evaluating -> scored"
"$gradients" task watch "$task"

step "gradients task result $task: the ranking, rewards, improvement and confidences"
"$gradients" task result "$task"

step "gradients task result $task --download: the winning model, every file checked against its sha256"
"$gradients" task result "$task" --download "$work/winner" --json \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); print("downloaded:", ", ".join(f["path"] for f in r["downloaded"]))'
(cd "$work/winner" && find . -type f | sort | xargs ls -l | awk '{print "  " $5 "\t" $9}')

step "the audit: every record rehashed against the signed checkpoints, every reward recomputed"
audit_key=$("$gradients" audit public-key)
for attempt in $(seq 1 60); do
  if "$gradients" audit verify --public-key "$audit_key" >"$work/verify.out" 2>&1 \
    && "$gradients" audit reconcile --task "$task" >"$work/reconcile.out" 2>&1; then
    break
  fi
  # The audit captures asynchronously: the ledger's entries may not be captured yet.
  [ "$attempt" = 60 ] && { cat "$work/verify.out" "$work/reconcile.out"; exit 1; }
  sleep 1
done
cat "$work/verify.out" "$work/reconcile.out"

step "a GRPO task: arithmetic prompts, rewarded for answering with a number close to the answer"
# The same market and miners: each trains by group-relative policy optimisation against the
# task's reward functions (the fixed-recipe miner runs G.O.D.'s GRPO recipe, the others probe
# learning rate and KL weight first), and the evaluator scores each model by the mean
# reward of its greedy completions on the hidden test prompts (higher is better).
"$gradients" data generate --out "$work/tasks" --family arithmetic --rows "$rows" --base-model tiny-1m --grpo
sed -n '/\[\[rewards\]\]/,$p' "$work/tasks/arithmetic-grpo/task.toml"
grpo_task=$("$gradients" task submit --dir "$work/tasks/arithmetic-grpo" --idempotency-key demo-grpo --hours 0.5 --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "task $grpo_task"
"$gradients" task watch "$grpo_task"
"$gradients" task result "$grpo_task"

step "done in ${SECONDS}s; stopping every process"
