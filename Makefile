# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what a fresh machine lacks into .deps/ (scripts/bootstrap.sh) first.

CARGO ?= cargo

.PHONY: demo test bootstrap build lint bench

bootstrap:
	@bash scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --workspace --bins

## Runs one task through the system on a private NATS server and a SQLite file.
demo: build
	@bash scripts/demo.sh

## Formatting, lints, then the whole test suite against real NATS (started per test),
## PostgreSQL and SQLite.
test: bootstrap lint
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks (release builds). The trainer's compares itself with PyTorch on the same
## model, which needs the full PyTorch (~4.6 GB, installed once into the cache); on it,
## transformers checks our logits against Hugging Face's (tests/hf_parity.rs).
bench: bootstrap
	$(CARGO) bench -p gradients-ledger --bench ledger_throughput
	$(CARGO) bench -p gradients-intake --bench submit_latency
	$(CARGO) bench -p gradients-reward --bench score
	BENCH_TORCH_PYTHON=$$(bash scripts/python-env.sh torch) $(CARGO) bench -p gradients-trainer --bench train_throughput
	BENCH_ORT_PYTHON=$$(bash scripts/python-env.sh onnxruntime) $(CARGO) bench -p gradients-evaluator --bench eval_throughput
	$(CARGO) bench -p gradients-evaluator --bench grpo_generation
	GRADIENTS_TRANSFORMERS_PYTHON=$$(bash scripts/python-env.sh transformers) $(CARGO) test -p gradients-trainer --test hf_parity -- --nocapture
