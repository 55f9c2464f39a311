# shellcheck shell=bash
# Sourced by scripts/install-opa.sh and scripts/install-jaeger.sh: the one copy of "use the pinned
# binary from the cache or PATH, else build it with Go once, then link it as node_modules/.bin/<name>".
#
# The caller sets ROOT (the repository) and defines two functions:
#   installed_version <binary>   prints the binary's version as vX.Y.Z (empty when it cannot tell)
#   go_build <go> <cache-dir>    builds <cache-dir>/<name>; non-zero on failure. It may set
#                                GO_BUILD_TMP to a directory removed on exit.
#
# install_pinned_go_binary <name> <version> <npm-setup-script> <an-name> <module> <see-suffix> <eta> <check-cached>
#   an-name      "an opa" / "a jaeger" (for the messages)
#   module       the module Go downloads, for the network hint ("OPA")
#   see-suffix   appended to the "put a binary on PATH" hint when Go is missing ("" for none)
#   eta          "about 3 minutes on 2 cores"
#   check-cached "version": a cached binary is used only at the pinned version; "exists": any cached one
# The cache is ${DMR_CACHE_DIR:-~/.cache/dmr}/<name>-<version>.

_go_install_ticker=""
GO_BUILD_TMP=""

_go_install_cleanup() {
  if [ -n "$_go_install_ticker" ]; then kill "$_go_install_ticker" 2>/dev/null || true; fi
  if [ -n "$GO_BUILD_TMP" ]; then rm -rf "$GO_BUILD_TMP"; fi
}

install_pinned_go_binary() {
  local name=$1 version=$2 setup=$3 an_name=$4 module=$5 see=$6 eta=$7 check_cached=$8
  local cache_dir="${DMR_CACHE_DIR:-$HOME/.cache/dmr}/${name}-${version}"
  local link="$ROOT/node_modules/.bin/$name"
  local target="" go
  if [ -x "$cache_dir/$name" ] &&
    { [ "$check_cached" = exists ] || [ "$(installed_version "$cache_dir/$name")" = "$version" ]; }; then
    target="$cache_dir/$name"
  elif command -v "$name" >/dev/null 2>&1 && [ "$(installed_version "$(command -v "$name")")" = "$version" ]; then
    target="$(command -v "$name")"
  else
    go="$(command -v go || true)"
    [ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
    if [ -z "$go" ]; then
      echo "error: $name $version is not installed and Go is not available to build it." >&2
      echo "  Either install Go (https://go.dev/doc/install, or 'apt-get install golang') and run 'npm run $setup' again," >&2
      echo "  or put $an_name $version binary on PATH$see." >&2
      exit 1
    fi
    echo "… building $name $version with $("$go" version | cut -d' ' -f3) ($eta, once; cached in $cache_dir)" >&2
    mkdir -p "$cache_dir"
    # A Go build is silent for minutes while it compiles: a line every 30 s shows the build is alive.
    ( started=$SECONDS; while sleep 30; do echo "… still building $name $version ($((SECONDS - started)) s)" >&2; done ) &
    _go_install_ticker=$!
    trap _go_install_cleanup EXIT
    if ! go_build "$go" "$cache_dir"; then
      echo "error: building $name $version with Go failed (output above)." >&2
      echo "  Check the network (Go downloads the $module module and its dependencies) and run 'npm run $setup' again," >&2
      echo "  or put $an_name $version binary on PATH." >&2
      exit 1
    fi
    kill "$_go_install_ticker" 2>/dev/null || true
    target="$cache_dir/$name"
  fi

  mkdir -p "$(dirname "$link")"
  ln -sf "$target" "$link"
  echo "$name $version: $target (linked as node_modules/.bin/$name)" >&2
}
