#!/usr/bin/env bash
# Replays the Dockerfile's build stages without a container engine, on exactly the files
# the build context admits (.dockerignore): cargo-chef `prepare` (planner stage), `cook`
# (the dependency layer) and the final build of auth-server and mcp-server, all --locked.
# `cargo check` stands in for `--release` so that a CI run reuses the dependencies clippy
# already compiled: what this proves is that the context and the recipe hold everything
# the build reads (manifests of every workspace member, sources, templates, migrations,
# embedded config) and that Cargo.lock is current.
set -euo pipefail
cd "$(dirname "$0")/.."
chef_version="$(sed -n 's/.*cargo install cargo-chef --locked --version \([0-9.]*\).*/\1/p' Dockerfile)"
[ -n "$chef_version" ] || { echo "no pinned cargo-chef version in Dockerfile" >&2; exit 1; }
if ! cargo chef --version 2>/dev/null | grep -q " $chef_version\$"; then
  cargo install cargo-chef --locked --version "$chef_version"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 scripts/docker-context.py --copy-to "$work/context"
echo "== planner: cargo chef prepare"
(cd "$work/context" && cargo chef prepare --recipe-path "$work/recipe.json")
echo "== dependency layer: cargo chef cook --locked (recipe only, no sources)"
mkdir "$work/cook" && cp "$work/recipe.json" "$work/cook/"
(cd "$work/cook" && cargo chef cook --check --locked --recipe-path recipe.json --bin auth-server --bin mcp-server)
echo "== build: cargo --locked --bin auth-server --bin mcp-server on the build context"
(cd "$work/context" && cargo check --locked --bin auth-server --bin mcp-server)
echo "docker-build-check: the build context and the cargo-chef recipe build both binaries"
