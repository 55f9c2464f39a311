#!/usr/bin/env bash
# Installs the pinned Open Policy Agent binary and links it as node_modules/.bin/opa,
# so every npm script (and the tests) find the same version.
#
# The binary is built once with `go install` and cached in ~/.cache/dmr/opa-<version>
# (override with DMR_CACHE_DIR). An `opa` already on PATH at the pinned version is used as is.
# The one place that knows the version: `dmr up` and the test runner call this script when opa is missing.
set -euo pipefail

OPA_VERSION="${OPA_VERSION:-v1.22.3}"
CACHE_DIR="${DMR_CACHE_DIR:-$HOME/.cache/dmr}/opa-${OPA_VERSION}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LINK="$ROOT/node_modules/.bin/opa"

installed_version() { "$1" version 2>/dev/null | sed -n 's/^Version: /v/p'; }

target=""
if [ -x "$CACHE_DIR/opa" ] && [ "$(installed_version "$CACHE_DIR/opa")" = "$OPA_VERSION" ]; then
  target="$CACHE_DIR/opa"
elif command -v opa >/dev/null 2>&1 && [ "$(installed_version "$(command -v opa)")" = "$OPA_VERSION" ]; then
  target="$(command -v opa)"
else
  GO="$(command -v go || true)"
  [ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
  if [ -z "$GO" ]; then
    echo "error: opa $OPA_VERSION is not installed and Go is not available to build it." >&2
    echo "  Either install Go (https://go.dev/doc/install, or 'apt-get install golang') and run 'npm run setup:opa' again," >&2
    echo "  or put an opa $OPA_VERSION binary on PATH (see https://www.openpolicyagent.org/docs/latest/#running-opa)." >&2
    exit 1
  fi
  echo "… building opa $OPA_VERSION with $("$GO" version | cut -d' ' -f3) (about 3 minutes on 2 cores, once; cached in $CACHE_DIR)" >&2
  mkdir -p "$CACHE_DIR"
  # go install is silent for minutes while it compiles: a line every 30 s shows the build is alive.
  ( started=$SECONDS; while sleep 30; do echo "… still building opa $OPA_VERSION ($((SECONDS - started)) s)" >&2; done ) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null || true' EXIT
  if ! GOBIN="$CACHE_DIR" GOFLAGS=-mod=mod "$GO" install "github.com/open-policy-agent/opa@${OPA_VERSION}"; then
    echo "error: building opa $OPA_VERSION with Go failed (output above)." >&2
    echo "  Check the network (Go downloads the OPA module and its dependencies) and run 'npm run setup:opa' again," >&2
    echo "  or put an opa $OPA_VERSION binary on PATH." >&2
    exit 1
  fi
  kill "$ticker" 2>/dev/null || true
  target="$CACHE_DIR/opa"
fi

mkdir -p "$(dirname "$LINK")"
ln -sf "$target" "$LINK"
echo "opa $OPA_VERSION: $target (linked as node_modules/.bin/opa)" >&2
