# The sedd server as a container: `sedd serve` on port 8080 with the shipped model
# (built into the binary) and ONNX Runtime's CPU library next to it, where the SDK
# looks first. deploy/README.md says how to build, run and deploy it.
#
#   docker build -t sedd .
#   docker run --rm -p 8080:8080 sedd
#   docker run --rm -p 8080:8080 -v $PWD/models:/models:ro sedd --model /models/brown-sedd-small

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo: the SDK loads ONNX Runtime with dlopen through onnxruntime_go.
RUN CGO_ENABLED=1 go build -trimpath -o /out/sedd ./cmd/sedd

# ONNX Runtime's official Linux x64 CPU build, out of the npm package onnxruntime-node
# (the same script the project's setup runs; the package's own install script never runs).
FROM node:22-bookworm-slim AS onnxruntime
WORKDIR /src
COPY scripts/install-onnxruntime.sh scripts/
RUN SEDD_NO_USER_INSTALL=1 scripts/install-onnxruntime.sh

FROM debian:bookworm-slim
COPY --from=build /out/sedd /opt/sedd/sedd
COPY --from=onnxruntime /src/third_party/onnxruntime/libonnxruntime.so /opt/sedd/libonnxruntime.so
# ONNX Runtime 1.30's telemetry reads the command line and machine id and writes logs; off.
ENV ORT_DISABLE_TELEMETRY=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/opt/sedd/sedd", "serve", "--addr", "0.0.0.0:8080"]
