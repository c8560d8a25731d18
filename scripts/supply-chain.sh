#!/usr/bin/env bash
# Supply-chain checks on Cargo.lock: `cargo deny check` (advisories, licenses, bans, sources;
# policy in deny.toml) and `cargo audit`, both against an offline snapshot of the RustSec
# advisory database (the machines that run this reach crates.io but no git host).
#
#   bash scripts/supply-chain.sh
#
# Needs cargo-deny and cargo-audit on PATH (.ci/run installs them:
# `cargo install --locked cargo-deny --version 0.20.2` and `cargo-audit --version 0.22.2`).
# ADVISORY_DB_SNAPSHOT points at another snapshot folder (default ../shared/advisory-db).
# The snapshot is never written to: it is copied into a temporary folder first.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot="${ADVISORY_DB_SNAPSHOT:-../shared/advisory-db}"
if [ ! -d "$snapshot/crates" ]; then
  echo "supply-chain: no advisory database snapshot at $snapshot (set ADVISORY_DB_SNAPSHOT)" >&2
  exit 1
fi
for tool in cargo-deny cargo-audit; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "supply-chain: $tool not found; install it with: cargo install --locked $tool" >&2
    exit 1
  fi
done

# The snapshot's date and upstream commit, as its README states them; otherwise the date of
# its newest advisory (a lower bound of the snapshot date).
snapshot_date=$(grep -oE '\(20[0-9]{2}-[0-9]{2}-[0-9]{2}\)' "$snapshot/README.md" 2>/dev/null |
  head -n1 | tr -d '()' || true)
snapshot_commit=$(grep -oE '\b[0-9a-f]{40}\b' "$snapshot/README.md" 2>/dev/null | head -n1 || true)
newest_advisory=$(grep -rhoE '^date = "[0-9-]+"' "$snapshot/crates" | sort | tail -n1 | cut -d'"' -f2)
snapshot_date="${snapshot_date:-$newest_advisory}"

# Both tools read the database as a git checkout. cargo-deny looks for it under db-path in a
# folder named after a hash of its URL; this name is the one for the default RustSec URL,
# which deny.toml keeps, so its advisories are matched to the right source.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db="$work/advisory-db-3157b0e258782691"
cp -r "$snapshot/." "$db"
chmod -R u+w "$db"
# The commit is dated now, so neither tool refuses the copy as stale (cargo-deny's limit is
# 90 days since the last fetch); the snapshot's real age is reported at the end instead.
(
  cd "$db"
  git init -q
  git add -A
  git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
    commit -qm "RustSec advisory database snapshot ${snapshot_commit:-} ($snapshot_date)"
)

# deny.toml with the snapshot copy as its db-path (a line-for-line replacement of the
# placeholder, so the line numbers in cargo-deny's messages match deny.toml).
if ! grep -qx '# db-path: set by scripts/supply-chain.sh' deny.toml; then
  echo "supply-chain: deny.toml lacks its '# db-path: set by scripts/supply-chain.sh' line" >&2
  exit 1
fi
sed "s|^# db-path: set by scripts/supply-chain.sh\$|db-path = \"$work\"|" deny.toml >"$work/deny.toml"

# Both tools read the dependency graph without the network: download every locked crate
# first (a no-op where a build already did; a fresh machine has none yet).
cargo fetch --locked --quiet

echo "=== cargo deny check (advisories, licenses, bans, sources; policy: deny.toml)"
cargo deny --offline --locked --config "$work/deny.toml" check --show-stats

echo "=== cargo audit"
# The advisories deny.toml ignores (each with its reason there) are ignored here too, so the
# list lives in one place. --stale: the snapshot may be older than cargo-audit's freshness
# limit; its date is reported below instead.
ignored=()
for id in $(grep -oE '^[[:space:]]*\{ *id = "RUSTSEC-[0-9]{4}-[0-9]{4}"' deny.toml | grep -oE 'RUSTSEC-[0-9-]+'); do
  ignored+=(--ignore "$id")
done
cargo audit --db "$db" --no-fetch --stale --deny warnings "${ignored[@]}"

age_days=$(( ($(date -u +%s) - $(date -u -d "$snapshot_date" +%s)) / 86400 ))
echo
echo "supply-chain: passed (cargo-deny $(cargo deny --version | awk '{print $2}'), cargo-audit $(cargo audit --version | awk '{print $2}'))."
echo "supply-chain: advisory database: RustSec snapshot of ${snapshot_date}${snapshot_commit:+ (upstream commit ${snapshot_commit:0:12})}, newest advisory ${newest_advisory}."
echo "supply-chain: advisories published after ${snapshot_date} (${age_days} days ago) are NOT covered."
echo "supply-chain: yanked versions were checked only against cargo's local index cache (offline run)."
if [ "$age_days" -gt 90 ]; then
  echo "supply-chain: warning: the snapshot is older than 90 days; refresh ../shared/advisory-db."
fi
