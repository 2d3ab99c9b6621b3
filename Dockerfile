# aurora-sidecar container image, for linux/amd64 and linux/arm64. Works with the legacy
# builder (no BuildKit-only syntax); buildx can build both platforms at once (README).
#
#   docker build -t aurora-sidecar .                          # compile inside Docker
#   scripts/build-static && \
#   docker build --target runtime-prebuilt -t aurora-sidecar . # use a binary built on the host
#   scripts/build-image                                        # both platforms and a
#                                                              # multi-arch OCI archive
#
# Build arguments:
#   RUST_IMAGE     the compiler image (upstream Rust 1.95 on Debian bookworm)
#   BASE_IMAGE     any image with a POSIX shell and /etc/ssl/certs/ca-certificates.crt; only
#                  used to assemble the runtime file system, whose files do not depend on
#                  the platform [default: RUST_IMAGE]
#   RUNTIME_IMAGE  scratch, or gcr.io/distroless/static-debian12:nonroot
#   RDS_CA_BUNDLE  the RDS global CA bundle: AWS's URL, or a file in the build context for
#                  offline builds
#   PREBUILT_BINARY  (runtime-prebuilt) the static binary, relative to the build context
#                  [default: target/dist/$TARGETPLATFORM/aurora-sidecar, where
#                  scripts/build-static puts it; buildx sets TARGETPLATFORM, the legacy
#                  builder takes it as a build argument and defaults to linux/amd64]
#
# Stage order matters: the legacy builder builds every stage before the target, so the
# stages that need no compiler come first and `--target runtime-prebuilt` never pulls
# RUST_IMAGE.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=${RUST_IMAGE}
ARG RUNTIME_IMAGE=scratch

# --- the runtime file system: CA certificates, a non-root user, the out-dir, the RDS CA
FROM ${BASE_IMAGE} AS rootfs
ARG RDS_CA_BUNDLE=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
# ADD, not COPY: the default source is a URL (COPY cannot fetch); a local file given
# instead is copied as COPY would (a PEM is no archive, so nothing is unpacked).
# hadolint ignore=DL3020
ADD ${RDS_CA_BUNDLE} /rootfs/etc/aurora-sidecar/rds-global-bundle.pem
COPY deploy/image/passwd deploy/image/group /rootfs/etc/
# The out-dir belongs to the non-root user, so a fresh compose volume or ECS bind mount
# mounted there inherits that owner; /tmp for nothing in particular but POSIX habits.
RUN set -eu; \
    test -s /etc/ssl/certs/ca-certificates.crt; \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/run/aurora-sidecar /rootfs/tmp; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    grep -q 'BEGIN CERTIFICATE' /rootfs/etc/aurora-sidecar/rds-global-bundle.pem; \
    chmod 0644 /rootfs/etc/passwd /rootfs/etc/group /rootfs/etc/ssl/certs/ca-certificates.crt \
        /rootfs/etc/aurora-sidecar/rds-global-bundle.pem; \
    chown 65532:65532 /rootfs/run/aurora-sidecar; \
    chmod 0755 /rootfs/run/aurora-sidecar; \
    chmod 1777 /rootfs/tmp

# --- what both images share: the file system, the user, how to run and check it
FROM ${RUNTIME_IMAGE} AS runtime-base
COPY --from=rootfs /rootfs/ /
USER 65532:65532
VOLUME ["/run/aurora-sidecar"]
ENTRYPOINT ["/usr/local/bin/aurora-sidecar"]
CMD ["run"]
# Exec form: the image has no shell. ECS ignores this (it needs the check in the task
# definition); docker and compose use it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["/usr/local/bin/aurora-sidecar", "health"]

# --- the image, from a binary built on the host (scripts/build-static)
FROM runtime-base AS runtime-prebuilt
ARG TARGETPLATFORM
ARG PREBUILT_BINARY=target/dist/${TARGETPLATFORM:-linux/amd64}/aurora-sidecar
COPY ${PREBUILT_BINARY} /usr/local/bin/aurora-sidecar

# --- compile: a static glibc binary for the platform it runs on (an explicit --target
# keeps build scripts dynamic). Same flags as scripts/build-static: RELR relocations on
# x86_64 (0.4 MB smaller, still a static PIE); aarch64's static binary is not a PIE, so
# it has none to pack.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN set -eu; \
    arch=$(uname -m); \
    flags="-C target-feature=+crt-static"; \
    if [ "$arch" = x86_64 ]; then flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"; fi; \
    RUSTFLAGS="$flags" cargo build --profile image --locked --target "$arch-unknown-linux-gnu"; \
    cp "target/$arch-unknown-linux-gnu/image/aurora-sidecar" /aurora-sidecar

# --- the image, compiled above (the default target)
FROM runtime-base AS runtime
COPY --from=build /aurora-sidecar /usr/local/bin/aurora-sidecar
