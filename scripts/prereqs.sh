#!/usr/bin/env bash
# Installs and starts what berth needs on a Debian machine, saying what it does:
# the Docker engine (Debian's docker.io) running, busybox-static (for the offline Node.js base image),
# debootstrap (for the offline Node.js build image), docker-registry (a real registry for push/pull tests),
# docker-compose, PostgreSQL (the tests start throwaway clusters), Chromium (the web UI's browser tests),
# Prometheus's promtool and server (unpacked, for the metrics tests), and the npm dependencies, built.
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
# Chromium for the web UI's browser tests (driven by playwright-core, which downloads no browser), and a font.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Prometheus's own tools for the metrics tests: promtool checks /metrics the way Prometheus parses it, and the
# dashboard test runs a real prometheus on 127.0.0.1. Unpacked from Debian's package, never installed as a
# service (the package would start one listening on every address).
PROMETHEUS_DIR="${BERTH_PROMETHEUS_DIR:-/var/cache/berth/prometheus}"
if [ ! -x "$PROMETHEUS_DIR/usr/bin/promtool" ]; then
  say "unpacking Debian's prometheus package into $PROMETHEUS_DIR"
  download="$(mktemp -d)"
  chmod 777 "$download"
  (cd "$download" && { apt-get download prometheus >/dev/null 2>&1 || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  as_root mkdir -p "$PROMETHEUS_DIR"
  as_root dpkg-deb -x "$download"/prometheus_*.deb "$PROMETHEUS_DIR"
  rm -rf "$download"
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
