#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (or those named as arguments) for
# FUZZ_SECONDS each, prints the executions per target, keeps crash artefacts and
# exits non-zero if any target crashed (a panic, a failed invariant, a timeout or
# running out of memory). docs/security.md (## Fuzzing) describes the targets.
#
#   bash scripts/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh     # the 10-minute local run
#   bash scripts/fuzz.sh rs_jwt mcp_body      # some targets
#
# Settings (environment):
#   FUZZ_SECONDS        seconds per target (default 30)
#   FUZZ_SANITIZER      address (default) or none; `none` needs no unstable flag
#   FUZZ_TARGET_DIR     build directory (default: $CARGO_TARGET_DIR-fuzz, or fuzz/target)
#   FUZZ_CORPUS_DIR     where new corpus entries go (default: $FUZZ_TARGET_DIR/corpus);
#                       the seeds in fuzz/corpus/<target> are read, never written
#   FUZZ_ARTIFACTS_DIR  where crashing inputs are kept (default: fuzz/artifacts)
#   CARGO_FUZZ_VERSION  cargo-fuzz to install when missing (default 0.13.2)
#   CARGO_INSTALL_ROOT  where it is installed (default /var/cache/mcp-oauth-ci/tools)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"
cargo_fuzz_version="${CARGO_FUZZ_VERSION:-0.13.2}"
install_root="${CARGO_INSTALL_ROOT:-/var/cache/mcp-oauth-ci/tools}"
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir="$FUZZ_TARGET_DIR"
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
  # Beside the main build, not in it: instrumented builds use other compiler flags
  # and would otherwise make the next normal build start over.
  target_dir="${CARGO_TARGET_DIR%/}-fuzz"
else
  target_dir="$repo/fuzz/target"
fi
corpus_dir="${FUZZ_CORPUS_DIR:-$target_dir/corpus}"
artifacts_dir="${FUZZ_ARTIFACTS_DIR:-$repo/fuzz/artifacts}"

# cargo-fuzz, pinned, installed once per machine.
export PATH="$install_root/bin:$PATH"
if ! cargo fuzz --version 2>/dev/null | grep -qF " $cargo_fuzz_version"; then
  echo "== installing cargo-fuzz $cargo_fuzz_version into $install_root"
  mkdir -p "$install_root"
  env -u CARGO_TARGET_DIR -u RUSTC_BOOTSTRAP \
    cargo install --locked --quiet --root "$install_root" "cargo-fuzz@$cargo_fuzz_version"
fi
cargo fuzz --version

# cargo-fuzz passes unstable compiler flags (sanitizer, coverage instrumentation
# options); RUSTC_BOOTSTRAP lets the stable toolchain accept them, so CI needs no
# nightly toolchain. FUZZ_SANITIZER=none avoids the sanitizer flag altogether.
export RUSTC_BOOTSTRAP=1
# A panic is reported by libFuzzer with its input either way; symbolising Rust's own
# backtrace of an instrumented binary can take longer than the per-input timeout and
# turn a crash into a reported "timeout". FUZZ_RUST_BACKTRACE=1 brings it back.
export RUST_BACKTRACE="${FUZZ_RUST_BACKTRACE:-0}"
export CARGO_TARGET_DIR="$target_dir"
fuzz_flags=(--sanitizer "$sanitizer" --release --debug-assertions)

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
if [ "${#targets[@]}" -eq 0 ]; then
  echo "no fuzz targets found in fuzz/" >&2
  exit 1
fi

echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer, into $target_dir)"
for target in "${targets[@]}"; do
  cargo fuzz build "${fuzz_flags[@]}" "$target"
done

logs="$target_dir/logs"
mkdir -p "$logs" "$artifacts_dir"
summary=()
failed=()
for target in "${targets[@]}"; do
  echo
  echo "== $target for ${seconds}s"
  mkdir -p "$corpus_dir/$target" "$artifacts_dir/$target"
  seeds=()
  [ -d "fuzz/corpus/$target" ] && seeds=("fuzz/corpus/$target")
  log="$logs/$target.log"
  status=0
  # New inputs go to the first corpus directory, so the seeds stay as committed.
  cargo fuzz run "${fuzz_flags[@]}" "$target" "$corpus_dir/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts_dir/$target/" \
    >"$log" 2>&1 || status=$?
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
  if [ -z "$executions" ]; then
    executions=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
  fi
  executions="${executions:-0}"
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    result="CRASH (exit $status)"
    failed+=("$target")
    tail -n 60 "$log"
    echo "-- crashing inputs kept in $artifacts_dir/$target/:"
    ls -l "$artifacts_dir/$target/" || true
    echo "-- reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run ${fuzz_flags[*]} $target <artefact>"
  fi
  echo "$target: $executions executions in ${seconds}s: $result (log: $log)"
  summary+=("$(printf '%-18s %12s executions  %s' "$target" "$executions" "$result")")
done

echo
echo "== fuzzing summary (${seconds}s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]} (artefacts in $artifacts_dir)" >&2
  exit 1
fi
