# expect: Missing parameter for `apt-get`
# dockerfilelint must flag an apt-get install that would wait for input.
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS build
RUN apt-get update && apt-get install --no-install-recommends make && rm -rf /var/lib/apt/lists/*
FROM ${BASE}
ARG RUN_TESTS=1
RUN make test
LABEL org.opencontainers.image.title="x" org.opencontainers.image.description="x" \
      org.opencontainers.image.version="x" org.opencontainers.image.source="x" \
      org.opencontainers.image.licenses="x"
USER 10001:10001
ENTRYPOINT ["mlpipe"]
