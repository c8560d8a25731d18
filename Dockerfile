# syntax=docker/dockerfile:1
# One multi-stage build for both services; pick one with `--target auth-server` or
# `--target mcp-server` (the compose files do). The build context is the allow-list in
# .dockerignore.

# Toolchain plus cargo-chef, which turns the workspace into a dependency-only recipe.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe holds every workspace member's manifest and target layout, not its code:
# it changes only when dependencies do, so the cook layer below stays cached across
# source edits.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Same profile, flags and binaries as the build below, so it reuses every dependency.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin auth-server --bin mcp-server
COPY . .
RUN cargo build --release --locked --bin auth-server --bin mcp-server

# Runtime: no compiler, no package manager run, no curl (the binaries check their own
# health). The CA bundle comes from the toolchain image for outbound HTTPS (an external
# issuer's JWKS, client metadata documents).
FROM debian:bookworm-slim AS runtime
COPY --from=chef /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /var/lib/auth-server /etc/mcp-oauth \
 && chown app:app /var/lib/auth-server
WORKDIR /app

FROM runtime AS auth-server
COPY --from=build /src/target/release/auth-server /usr/local/bin/auth-server
COPY config/ /etc/mcp-oauth/
USER 10001:10001
EXPOSE 3001
VOLUME ["/var/lib/auth-server"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=10 \
  CMD ["/usr/local/bin/auth-server", "healthcheck", "--config", "/etc/mcp-oauth/auth-server.toml"]
ENTRYPOINT ["/usr/local/bin/auth-server"]
CMD ["serve", "--config", "/etc/mcp-oauth/auth-server.toml"]

FROM runtime AS mcp-server
COPY --from=build /src/target/release/mcp-server /usr/local/bin/mcp-server
COPY config/ /etc/mcp-oauth/
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=10 \
  CMD ["/usr/local/bin/mcp-server", "healthcheck", "--ready", "--config", "/etc/mcp-oauth/mcp-server.toml"]
ENTRYPOINT ["/usr/local/bin/mcp-server"]
CMD ["serve", "--config", "/etc/mcp-oauth/mcp-server.toml"]
