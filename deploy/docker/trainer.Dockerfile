# syntax=docker/dockerfile:1
# The reference miner with libtorch and its CUDA libraries (from PyTorch's wheel with its
# full dependency set; the node supplies only the driver, through the NVIDIA container
# toolkit). libtorch lives at the same path in both stages because the binary's rpath
# points at it.
#   docker build -f deploy/docker/trainer.Dockerfile -t gradients/trainer .
ARG RUST_VERSION=1.95
ARG TORCH_VERSION=2.11.0

FROM debian:bookworm-slim AS torch
ARG TORCH_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/py && /opt/py/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"

FROM rust:${RUST_VERSION}-bookworm AS build
COPY --from=torch /opt/py /opt/py
ENV LIBTORCH=/opt/py/lib/python3.11/site-packages/torch
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target,id=trainer \
    cargo build --release --locked -p gradients-trainer \
 && mkdir -p /out && cp target/release/gradients-trainer /out/

FROM torch
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin gradients
COPY --from=build /out/gradients-trainer /usr/local/bin/
USER 10001
ENTRYPOINT ["/usr/local/bin/gradients-trainer"]
