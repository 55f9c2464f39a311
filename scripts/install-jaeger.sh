#!/usr/bin/env bash
# Installs the pinned Jaeger all-in-one (the v2 `jaeger` binary: OTLP receiver, in-memory store, UI)
# and links it as node_modules/.bin/jaeger, for `dmr up --observability` and the on-demand Jaeger check.
#
# Built once with `go build` and cached in ~/.cache/dmr/jaeger-<version> (override with DMR_CACHE_DIR);
# a `jaeger` already on PATH at the pinned version is used as is. Nothing in `npm test` needs it
# (docs/decisions/0032-traces.md says why), so CI does not build it.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
CACHE_DIR="${DMR_CACHE_DIR:-$HOME/.cache/dmr}/jaeger-${JAEGER_VERSION}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LINK="$ROOT/node_modules/.bin/jaeger"

# `jaeger version` prints JSON with "gitVersion":"v1.75.0" (and the v2 tag beside it).
installed_version() { "$1" version 2>/dev/null | sed -n 's/.*"gitVersion": *"\(v[0-9.]*\)".*/\1/p' | head -1; }

target=""
if [ -x "$CACHE_DIR/jaeger" ]; then
  target="$CACHE_DIR/jaeger"
elif command -v jaeger >/dev/null 2>&1 && [ "$(installed_version "$(command -v jaeger)")" = "$JAEGER_VERSION" ]; then
  target="$(command -v jaeger)"
else
  GO="$(command -v go || true)"
  [ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
  if [ -z "$GO" ]; then
    echo "error: jaeger $JAEGER_VERSION is not installed and Go is not available to build it." >&2
    echo "  Either install Go (https://go.dev/doc/install, or 'apt-get install golang') and run 'npm run setup:jaeger' again," >&2
    echo "  or put a jaeger $JAEGER_VERSION binary on PATH." >&2
    exit 1
  fi
  echo "… building jaeger $JAEGER_VERSION with $("$GO" version | cut -d' ' -f3) (several minutes on 2 cores, once; cached in $CACHE_DIR)" >&2
  mkdir -p "$CACHE_DIR"
  ( started=$SECONDS; while sleep 30; do echo "… still building jaeger $JAEGER_VERSION ($((SECONDS - started)) s)" >&2; done ) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null || true' EXIT
  # `go install …/cmd/jaeger@v1.75.0` refuses: Jaeger's go.mod has a replace directive. So: the module's
  # source from the Go module proxy, copied out of the read-only module cache, built as the main module.
  src="$(mktemp -d)"
  trap 'kill "$ticker" 2>/dev/null || true; rm -rf "$src"' EXIT
  if ! { dir="$(GOFLAGS=-mod=mod "$GO" mod download -json "github.com/jaegertracing/jaeger@${JAEGER_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" && [ -n "$dir" ] && cp -r "$dir/." "$src" && chmod -R u+w "$src" &&
    (cd "$src" && GOFLAGS=-mod=mod "$GO" build -trimpath -o "$CACHE_DIR/jaeger" ./cmd/jaeger); }; then
    echo "error: building jaeger $JAEGER_VERSION with Go failed (output above)." >&2
    echo "  Check the network (Go downloads the Jaeger module and its dependencies) and run 'npm run setup:jaeger' again," >&2
    echo "  or put a jaeger $JAEGER_VERSION binary on PATH." >&2
    exit 1
  fi
  kill "$ticker" 2>/dev/null || true
  target="$CACHE_DIR/jaeger"
fi

mkdir -p "$(dirname "$LINK")"
ln -sf "$target" "$LINK"
echo "jaeger $JAEGER_VERSION: $target (linked as node_modules/.bin/jaeger)" >&2
