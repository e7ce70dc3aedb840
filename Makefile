# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what a fresh machine lacks into .deps/ (scripts/bootstrap.sh) first.

CARGO ?= cargo

.PHONY: demo test bootstrap build lint

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
