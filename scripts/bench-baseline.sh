#!/usr/bin/env bash
# Builds berth at commit c2573dd (before the PostgreSQL store and claim batching: SQLite only) into
# node_modules/.cache, for `npm run bench:scale` to measure the claim path against in the same run: a target
# such as "twice the claims per second" is a ratio, and a machine's speed varies too much between runs for a
# figure from another day to mean anything. The build uses this checkout's node_modules (its dependencies
# resolve from there), so it needs no network. When it cannot be built (no git, a shallow clone, a failed
# build), it says why and the bench runs without the comparison: this script never fails the bench.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[berth]\033[0m %s\n' "$*"; }

rev=c2573ddacefc07c6c3a258ba8dd0cfc5ba67cd1e
dest="node_modules/.cache/berth-baseline-${rev:0:7}"

# Another build to compare with (BERTH_BENCH_SCALE_BASELINE) is the caller's to make.
if [ -n "${BERTH_BENCH_SCALE_BASELINE:-}" ] || [ -f "$dest/dist/cli/main.js" ]; then exit 0; fi
if ! command -v git >/dev/null 2>&1; then
  say "no baseline for bench:scale: git is not installed"
  exit 0
fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  say "no baseline for bench:scale: commit ${rev:0:7} is not in this clone's history (a shallow clone? git fetch --unshallow)"
  exit 0
fi
say "building the baseline for bench:scale: berth at ${rev:0:7} into $dest"
partial="$dest.partial"
trap 'rm -rf "$partial"' EXIT
rm -rf "$partial"
mkdir -p "$partial"
if ! git archive "$rev" | tar -x -C "$partial"; then
  say "no baseline for bench:scale: could not unpack ${rev:0:7} (git archive)"
  exit 0
fi
if ! (cd "$partial" && ../../.bin/tsc -p tsconfig.build.json); then
  say "no baseline for bench:scale: ${rev:0:7} did not build against this checkout's dependencies"
  exit 0
fi
mv "$partial" "$dest"
