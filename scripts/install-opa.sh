#!/usr/bin/env bash
# Installs the pinned Open Policy Agent binary and links it as node_modules/.bin/opa,
# so every npm script (and the tests) find the same version.
#
# The binary is built once with `go install` and cached in ~/.cache/dmr/opa-<version>
# (override with DMR_CACHE_DIR). An `opa` already on PATH at the pinned version is used as is.
# The one place that knows the version: `dmr up` and the test runner call this script when opa is missing.
# The cache-or-build-and-link steps are scripts/lib/go-install.sh, shared with install-jaeger.sh.
set -euo pipefail

OPA_VERSION="${OPA_VERSION:-v1.22.3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/go-install.sh
source "$ROOT/scripts/lib/go-install.sh"

installed_version() { "$1" version 2>/dev/null | sed -n 's/^Version: /v/p'; }

go_build() { GOBIN="$2" GOFLAGS=-mod=mod "$1" install "github.com/open-policy-agent/opa@${OPA_VERSION}"; }

install_pinned_go_binary opa "$OPA_VERSION" setup:opa "an opa" OPA \
  " (see https://www.openpolicyagent.org/docs/latest/#running-opa)" "about 3 minutes on 2 cores" version
