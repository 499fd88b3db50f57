#!/usr/bin/env bash
# The test command: prerequisites, the guard rails (types, lint, import cycles), then the whole suite against
# the real Docker engine. Any step that fails fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
echo "[berth] typechecking (tsc --noEmit)"
npm run --silent typecheck
echo "[berth] linting (eslint: no floating promises)"
npm run --silent lint
echo "[berth] checking for import cycles (dpdm, type-only imports skipped)"
npm run --silent check:cycles
exec npx vitest run "$@"
