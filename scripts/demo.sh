#!/usr/bin/env bash
# The demo: a private nats-server and intake on ports of their own, a SQLite file in a
# temporary folder, and a task through the system: accepted and split, a broken one
# refused with the row and column named, then get and list. Everything stops on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
gradients="$root/target/debug/gradients"
nats_server="$root/.deps/py/bin/nats-server"
work=$(mktemp -d -t gradients-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
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

step "starting intake (metrics and health on http://127.0.0.1:$http_port)"
"$gradients" serve intake >"$work/intake.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$http_port/readyz', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.2
done
python3 -c "import urllib.request; print('readyz:', urllib.request.urlopen('http://127.0.0.1:$http_port/readyz').read().decode())"

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

step "intake log"
cat "$work/intake.log"
