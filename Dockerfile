# syntax=docker/dockerfile:1
# edgebind container image: a static (musl) binary on distroless/static, running as non-root.
#   docker build -t ghcr.io/edgebind/edgebind:0.1.0 .
# The Helm chart and deploy/kustomize run it with a read-only root filesystem and no capabilities;
# the binary writes nothing to disk, so no volume is needed.

# ---- build: Alpine's Rust targets musl, so the result is statically linked ----
FROM rust:1.95-alpine AS build
# ring (TLS) compiles C and assembly.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit), which
# works for a workspace without stub sources for every crate and target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edgebind --bin edgebind \
    && cp target/release/edgebind /edgebind \
    && /edgebind --version

# ---- runtime: no shell, no package manager; uid/gid 65532 (nonroot) ----
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="edgebind" \
      org.opencontainers.image.description="Binds LINSTOR replicated block storage to the Cloudflare edge" \
      org.opencontainers.image.source="https://github.com/edgebind/edgebind" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /edgebind /usr/local/bin/edgebind
USER 65532:65532
# Controller admin (/livez /readyz /metrics); gateway API and admin.
EXPOSE 8080 8443 8081
ENTRYPOINT ["/usr/local/bin/edgebind"]
CMD ["controller"]
