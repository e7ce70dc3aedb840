# syntax=docker/dockerfile:1
# The control plane: intake, dispatch, ledger and audit, plus the `gradients` CLI. No
# libtorch, no ONNX Runtime. Build from the repository root:
#   docker build -f deploy/docker/control-plane.Dockerfile -t gradients/control-plane .
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target,id=control-plane \
    cargo build --release --locked \
      -p gradients-intake -p gradients-dispatch -p gradients-ledger -p gradients-audit -p gradients-cli \
 && mkdir -p /out \
 && cp target/release/gradients-intake target/release/gradients-dispatch target/release/gradients-ledger \
       target/release/gradients-audit target/release/gradients /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin gradients
COPY --from=build /out/ /usr/local/bin/
USER 10001
# Each Deployment picks its binary with `command`; the CLI is there for operators.
ENTRYPOINT ["/usr/local/bin/gradients"]
