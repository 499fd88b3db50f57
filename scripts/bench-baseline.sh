#!/usr/bin/env bash
# Builds berth as it was when scale-out began (commit c2573dd: SQLite only, no PostgreSQL, no claim batching)
# into node_modules/.cache, for `npm run bench:scale` to measure the claim path against in the same run: a
# target such as "twice the claims per second" is a ratio, and this machine's speed varies too much between
# runs for a figure from another day to mean anything. The build uses this checkout's node_modules (its
# dependencies resolve from there), so it needs no network. Without the commit (a shallow clone), it says so
# and the bench runs without the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[berth]\033[0m %s\n' "$*"; }

rev=c2573ddacefc07c6c3a258ba8dd0cfc5ba67cd1e
dest="node_modules/.cache/berth-baseline-${rev:0:7}"

if [ -f "$dest/dist/cli/main.js" ]; then exit 0; fi
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  say "no baseline for bench:scale: commit ${rev:0:7} is not in this clone's history (a shallow clone? git fetch --unshallow)"
  exit 0
fi
say "building the baseline for bench:scale: berth at ${rev:0:7}, before scale-out, into $dest"
rm -rf "$dest" "$dest.partial"
mkdir -p "$dest.partial"
git archive "$rev" | tar -x -C "$dest.partial"
(cd "$dest.partial" && ../../.bin/tsc -p tsconfig.build.json)
mv "$dest.partial" "$dest"
