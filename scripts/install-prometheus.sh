#!/usr/bin/env bash
# Installs Debian's Prometheus (prometheus and promtool in /usr/bin) for `dmr up --observability`,
# the alert-rule tests (promtool check/test rules) and the observability test. Idempotent: does
# nothing when both are on PATH. Measured on the 2-core machine: about 40 s with the package lists
# already fetched (`apt-get install --no-install-recommends prometheus`, 2.42 on Debian 12).
#
# The package's post-install step may enable its system service (port 9090); DMR never uses it:
# the mesh runs its own Prometheus on a port of its own with its own data directory.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "prometheus: $(prometheus --version 2>&1 | sed -n 1p)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: prometheus is not installed and this is not a Debian-like system (no apt-get)." >&2
  echo "  Install Prometheus 2.x so that 'prometheus' and 'promtool' are on PATH (https://prometheus.io/download/)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "error: installing prometheus needs root: run 'apt-get install prometheus' as root." >&2
    exit 1
  fi
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
started=$(date +%s)
# A stale package list cannot find the package: refresh it only when the first try fails.
$SUDO apt-get install -y -q --no-install-recommends prometheus ||
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends prometheus; }
echo "prometheus: $(prometheus --version 2>&1 | sed -n 1p) (installed in $(($(date +%s) - started)) s)"
