# syntax=docker/dockerfile:1
# One multi-stage build for both services; pick one with `--target auth-server` or
# `--target mcp-server` (docker-compose.yml does).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Build dependencies first so that source edits reuse the cached layer.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/Cargo.toml
COPY auth-server/Cargo.toml auth-server/Cargo.toml
COPY mcp-server/Cargo.toml mcp-server/Cargo.toml
COPY demo/Cargo.toml demo/Cargo.toml
RUN for c in shared auth-server mcp-server demo; do mkdir -p $c/src && echo 'fn main() {}' > $c/src/main.rs && touch $c/src/lib.rs; done \
 && cargo build --release --locked -p auth-server -p mcp-server || true
COPY . .
RUN touch shared/src/lib.rs auth-server/src/lib.rs auth-server/src/main.rs mcp-server/src/lib.rs mcp-server/src/main.rs \
 && cargo build --release --locked --bin auth-server --bin mcp-server

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /var/lib/auth-server /etc/mcp-oauth \
 && chown app /var/lib/auth-server
WORKDIR /app

FROM runtime AS auth-server
COPY --from=build /src/target/release/auth-server /usr/local/bin/auth-server
COPY config/ /etc/mcp-oauth/
USER app
EXPOSE 3001
VOLUME ["/var/lib/auth-server"]
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD curl -fsS http://127.0.0.1:3001/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/auth-server"]
CMD ["serve", "--config", "/etc/mcp-oauth/auth-server.toml"]

FROM runtime AS mcp-server
COPY --from=build /src/target/release/mcp-server /usr/local/bin/mcp-server
COPY config/ /etc/mcp-oauth/
USER app
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD curl -fsS http://127.0.0.1:3000/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/mcp-server"]
CMD ["serve", "--config", "/etc/mcp-oauth/mcp-server.toml"]
