# switchboard: a multi-stage build. The first stage compiles the binary with the `production`
# profile (the release build optimised as one program, as the load benchmark measures); the image
# that runs is Debian slim with CA certificates (providers and Twilio are HTTPS) and the
# binary, run as an unprivileged user with its data under /data.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY actors actors
COPY supervisors supervisors
COPY src src
COPY migrations migrations
COPY web web
RUN cargo build --profile production --locked --bin switchboard && strip target/production/switchboard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin switchboard \
    && mkdir -p /data && chown switchboard /data
COPY --from=build /src/target/production/switchboard /usr/local/bin/switchboard
USER switchboard
WORKDIR /data
ENV SWITCHBOARD_LISTEN=0.0.0.0:8080 \
    SWITCHBOARD_DATA_DIR=/data \
    SWITCHBOARD_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
# SIGTERM drains: no new calls, live ones finish (DRAIN_TIMEOUT), then the process exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchboard"]
CMD ["serve"]
