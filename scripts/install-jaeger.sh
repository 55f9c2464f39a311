#!/usr/bin/env bash
# Installs the pinned Jaeger all-in-one (the v2 `jaeger` binary: OTLP receiver, in-memory store, UI)
# and links it as node_modules/.bin/jaeger, for `dmr up --observability` and the on-demand Jaeger check.
#
# Built once with `go build` and cached in ~/.cache/dmr/jaeger-<version> (override with DMR_CACHE_DIR);
# a `jaeger` already on PATH at the pinned version is used as is. Nothing in `npm test` needs it
# (docs/decisions/0032-traces.md says why), so CI does not build it.
# The cache-or-build-and-link steps are scripts/lib/go-install.sh, shared with install-opa.sh.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.75.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/go-install.sh
source "$ROOT/scripts/lib/go-install.sh"

# `jaeger version` prints JSON with "gitVersion":"v1.75.0" (and the v2 tag beside it).
installed_version() { "$1" version 2>/dev/null | sed -n 's/.*"gitVersion": *"\(v[0-9.]*\)".*/\1/p' | head -1; }

# `go install …/cmd/jaeger@v1.75.0` refuses: Jaeger's go.mod has a replace directive. So: the module's
# source from the Go module proxy, copied out of the read-only module cache, built as the main module.
go_build() {
  local go=$1 out=$2 dir
  GO_BUILD_TMP="$(mktemp -d)"
  dir="$(GOFLAGS=-mod=mod "$go" mod download -json "github.com/jaegertracing/jaeger@${JAEGER_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" && [ -n "$dir" ] && cp -r "$dir/." "$GO_BUILD_TMP" &&
    chmod -R u+w "$GO_BUILD_TMP" &&
    (cd "$GO_BUILD_TMP" && GOFLAGS=-mod=mod "$go" build -trimpath -o "$out/jaeger" ./cmd/jaeger)
}

# A cached jaeger is used whatever it reports: the cache directory is per version already.
install_pinned_go_binary jaeger "$JAEGER_VERSION" setup:jaeger "a jaeger" Jaeger "" "several minutes on 2 cores" exists
