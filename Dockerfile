# syntax=docker/dockerfile:1
# edgebind container image: the glibc build on distroless/cc, running as non-root.
#   docker build -t ghcr.io/edgebind/edgebind:0.1.0 .
# glibc, not musl: the README's memory figures and the allocator tuning (one malloc arena, pages
# returned after each full refresh: crates/edgebind/src/memory.rs) are measured on this build,
# so the image ships the binary that was measured.
# The Helm chart and deploy/kustomize run it with a read-only root filesystem and no capabilities;
# the binary writes nothing to disk, so no volume is needed.
# tests/python/test_image.py builds exactly this context (minus .dockerignore) without Docker.

# ---- build: Debian 12 (bookworm), the same glibc as the runtime image ----
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds (BuildKit), which
# works for a workspace without stub sources for every crate and target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p edgebind --bin edgebind \
    && cp target/release/edgebind /edgebind \
    && /edgebind --version

# ---- runtime: glibc and libgcc, no shell, no package manager; uid/gid 65532 (nonroot) ----
FROM gcr.io/distroless/cc-debian12:nonroot
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
