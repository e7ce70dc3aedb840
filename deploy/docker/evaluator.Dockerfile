# syntax=docker/dockerfile:1
# The evaluator with ONNX Runtime (loaded at run time: the binary links no runtime, so the
# library version is this image's choice, pinned to the one scripts/bootstrap.sh tests with).
#   docker build -f deploy/docker/evaluator.Dockerfile -t gradients/evaluator .
ARG RUST_VERSION=1.95
ARG ONNXRUNTIME_VERSION=1.31.1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target,id=evaluator \
    cargo build --release --locked -p gradients-evaluator \
 && mkdir -p /out && cp target/release/gradients-evaluator /out/

FROM debian:bookworm-slim
ARG ONNXRUNTIME_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && python3 -m venv /opt/ort && /opt/ort/bin/pip install --no-cache-dir --no-deps "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && ln -s /opt/ort/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION} /usr/local/lib/libonnxruntime.so \
 && apt-get purge -y python3-venv && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin gradients
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
COPY --from=build /out/gradients-evaluator /usr/local/bin/
USER 10001
ENTRYPOINT ["/usr/local/bin/gradients-evaluator"]
