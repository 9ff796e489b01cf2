# expect: numeric non-root USER
# The image rules must refuse a runtime stage that runs as root (or as a
# user name that runAsNonRoot cannot check).
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS build
ARG RUN_TESTS=1
RUN make test
FROM ${BASE}
LABEL org.opencontainers.image.title="x" org.opencontainers.image.description="x" \
      org.opencontainers.image.version="x" org.opencontainers.image.source="x" \
      org.opencontainers.image.licenses="x"
USER mlpipe
ENTRYPOINT ["mlpipe"]
