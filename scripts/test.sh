#!/usr/bin/env bash
# The test command: prerequisites, then the whole suite against the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
echo "[berth] typechecking (tsc --noEmit)"
npm run --silent typecheck
exec npx vitest run "$@"
