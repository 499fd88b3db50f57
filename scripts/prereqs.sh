#!/usr/bin/env bash
# Installs and starts what berth needs on a Debian machine, saying what it does:
# the Docker engine (Debian's docker.io) running, busybox-static (for the offline Node.js base image),
# debootstrap (for the offline Node.js build image), docker-registry (a real registry for push/pull tests),
# docker-compose, PostgreSQL (the tests start throwaway clusters), and the npm dependencies, built.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[berth]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# PostgreSQL's server binaries, for the tests' throwaway clusters (no system service is used).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: /var/log/berth-dockerd.log)"
  as_root sh -c 'nohup dockerd >/var/log/berth-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    say "dockerd did not come up within 60 s; its log ends with:"
    tail -n 20 /var/log/berth-dockerd.log >&2 || true
    exit 1
  fi
fi
say "Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is running"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "building berth (tsc)"
npm run --silent build
