# mlpipe container image: Debian 12, non-root, read-only-root friendly.
#
#   docker build -t mlpipe:0.1.0 .
#   docker run --rm --read-only -v "$PWD/data:/data" mlpipe:0.1.0 \
#       run /usr/share/mlpipe/pipelines/iris-logreg.yaml \
#       --set load.path=/usr/share/mlpipe/examples/data/iris.csv
#
# `make image-test` builds and runs it with podman and no Docker engine, from a
# local Debian 12 base (--build-arg BASE=localhost/mlpipe-base:bookworm).
#
# Build args: BASE (both stages), RUN_TESTS=1 (0 skips the in-build `make test`:
# for debugging the image only; a released image must be built with tests),
# VERSION, SOURCE, REVISION and LICENSES for the OCI labels.

ARG BASE=debian:bookworm-slim

# ---------------------------------------------------------------- build
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# `make deps` installs the Makefile's DEB_PKGS; keep it from pulling recommends.
RUN printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        > /etc/apt/apt.conf.d/90mlpipe-no-recommends \
    && apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
RUN make deps && rm -rf /var/lib/apt/lists/*
COPY . .
ARG RUN_TESTS=1
# A green image is a tested binary: unit + e2e, plain and under ASan+UBSan.
# The manifest validation (tests/e2e/t_k8s.sh) needs Node.js and the npm
# registry; it runs in the host's `make test`, not here.
RUN if [ "$RUN_TESTS" = 1 ]; then \
        MLPIPE_SKIP_K8S_VALIDATION="runs on the host, not in the image build" make test; \
    else \
        echo "WARNING: RUN_TESTS=$RUN_TESTS: the in-build 'make test' was skipped" >&2; \
    fi \
    && make mlpipe plugins

# ---------------------------------------------------------------- runtime
FROM ${BASE}

# Runtime libraries only (the -dev packages stay in the build stage).
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libyaml-0-2 libcsv3 libopenblas0-pthread libsqlite3-0 libjansson4 libssl3 \
        libmicrohttpd12 zlib1g \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 10001 mlpipe \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin mlpipe \
    && mkdir -p /data/artifacts \
    && chown -R 10001:10001 /data

COPY --from=build /src/mlpipe /usr/local/bin/mlpipe
COPY --from=build /src/pipelines /usr/share/mlpipe/pipelines
COPY --from=build /src/examples /usr/share/mlpipe/examples

# Fail the build, not the first run, if a shared library is missing.
RUN if ldd /usr/local/bin/mlpipe | grep 'not found'; then \
        echo "mlpipe: missing runtime libraries (above)" >&2; exit 1; fi \
    && mlpipe --version

# Labels last: their values (version, revision) change often and would
# otherwise invalidate the cached layers above.
ARG BASE
ARG VERSION=0.1.0
ARG SOURCE=
ARG REVISION=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="mlpipe" \
      org.opencontainers.image.description="Container-native ML pipeline runner: runs YAML pipelines (load, split, transform, train, evaluate, export) and records every run in SQLite" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.base.name="${BASE}"

USER 10001:10001
WORKDIR /data
ENV MLPIPE_DB=/data/runs.db \
    MLPIPE_ARTIFACTS=/data/artifacts
VOLUME ["/data"]
ENTRYPOINT ["mlpipe"]
CMD ["--help"]
