#!/usr/bin/env bash
# Quickstart: brings berth up (server with its embedded SQLite store + one Docker agent), registers the
# custom-environment example, runs it in a container and streams its states and logs.
# berth stays up afterwards; stop it with: kill "$(cat .berth/up.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[berth]\033[0m %s\n' "$*"; }

bash scripts/prereqs.sh
berth() { node dist/cli/main.js "$@"; }
mkdir -p .berth
export BERTH_API_URL="${BERTH_API_URL:-http://127.0.0.1:4200}"

if berth flows >/dev/null 2>&1; then
  say "a berth server already answers at $BERTH_API_URL; using it"
else
  say "starting berth up (server + agent) in the background; log: .berth/up.log"
  # In berth's home (BERTH_HOME, default ~/.berth), where every berth command on this machine finds its token.
  BERTH_LOG_FORMAT=pretty nohup node dist/cli/main.js up >.berth/up.log 2>&1 &
  echo $! >.berth/up.pid
  for _ in $(seq 1 300); do
    if grep -q "berth is up" .berth/up.log 2>/dev/null; then break; fi
    if ! kill -0 "$(cat .berth/up.pid)" 2>/dev/null; then say "berth up failed:"; cat .berth/up.log >&2; exit 1; fi
    sleep 0.5
  done
  grep -q "berth is up" .berth/up.log || { say "berth up did not start in time:"; tail -n 30 .berth/up.log >&2; exit 1; }
  say "berth is up at $BERTH_API_URL (pid $(cat .berth/up.pid))"
fi

say "registering examples/custom-environment.ts (builds its storage image; --no-push: no registry here)"
berth register examples/custom-environment.ts --no-push
say "running it and watching"
berth run "Custom Environment Example" --watch
say "the web UI: http://127.0.0.1:4200/ (paste the token it asks for from ${BERTH_HOME:-$HOME/.berth}/admin.token)"
say "done. Try: berth runs, berth flows, berth agents (run 'npm link' once to put berth on your PATH)."
say "berth is still up; stop it with: kill \$(cat .berth/up.pid)"
