#!/usr/bin/env bash
# The release, as far as it can go without publishing (issue 15):
#
#  1. Node.js >= 22 (.ci/node.sh) and the MCPB CLI @anthropic-ai/mcpb, pinned
#     by .ci/mcpb/package-lock.json (`npm ci`, skipped when up to date).
#  2. GoReleaser v2.17.0, built with `go install` (not in go.mod) into the CI
#     cache ($CLINK_CI_CACHE, else $XDG_CACHE_HOME/clink-mcp-ci, else
#     ~/.cache/clink-mcp-ci): the first build takes minutes, later runs
#     reuse it.
#  3. `goreleaser check`, then a snapshot build of linux/amd64
#     (`goreleaser build --snapshot --clean --single-target`), whose post
#     hook packs its desktop extension bundle (mcpb/pack.sh: `mcpb pack`).
#  4. The snapshot binary: static, trimmed, stripped; `version` prints the
#     injected snapshot version and commit; `demo` runs.
#  5. The bundle: `mcpb validate` on mcpb/manifest.json; unpacked, its binary
#     is the snapshot's and answers an MCP client over stdio the way Claude
#     Desktop starts it (serve, with the manifest's environment).
#  6. The release's server.json (mcpb/server-json.mjs: version, bundle URL
#     and SHA-256) against the MCP Registry's schema (.ci/registry).
#
# Run alone with `bash .ci/release.sh` from anywhere. Leaves dist/ (ignored
# by git) with the snapshot; removes its temp folder on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

GORELEASER_VERSION=v2.17.0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/clink-mcp-release.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cache=${CLINK_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/clink-mcp-ci}

. .ci/timed.sh # the working directory is the repository root
fail() { echo "FAILED: $*"; exit 1; }

# ---- 1. Node and the MCPB CLI
mcpb=.ci/mcpb/node_modules/.bin/mcpb
node_setup() {
  local entries
  entries=$(bash .ci/node.sh) || fail "no Node.js >= 22 (see above)"
  export PATH="$entries:$PATH"
  echo "node $(node --version), npm $(npm --version): $(command -v node)"
  bash mcpb/pack.sh setup
}

# ---- 2. GoReleaser
goreleaser="$cache/goreleaser-$GORELEASER_VERSION/goreleaser"
goreleaser_install() {
  if [ -x "$goreleaser" ] && "$goreleaser" --version 2>/dev/null | grep -q -F "${GORELEASER_VERSION#v}"; then
    echo "cached: $goreleaser"
  else
    local gobin
    mkdir -p "$cache"
    gobin=$(mktemp -d "$cache/.goreleaser.XXXXXX")
    echo "go install github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION (the first time: minutes)"
    # Outside the module, so that go.mod and -mod=readonly play no part.
    (cd "$tmp" && GOBIN="$gobin" GOFLAGS= go install "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION") ||
      { rm -rf "$gobin"; fail "go install goreleaser"; }
    rm -rf "$(dirname "$goreleaser")"
    mv "$gobin" "$(dirname "$goreleaser")"
  fi
  "$goreleaser" --version | grep -i -E '^GitVersion' || true
}

# ---- 3. check and snapshot build
goreleaser_check() {
  "$goreleaser" check
}
snapshot() {
  # GoReleaser reads the commit only where `git ls-remote --get-url` answers;
  # a clone without a remote gets one for this command alone (environment
  # config, nothing written to the repository).
  if [ -z "$(git remote)" ]; then
    export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/clink-mcp/clink-mcp.git
  fi
  # --single-target builds for GOOS/GOARCH: linux/amd64, whatever this machine is.
  GOOS=linux GOARCH=amd64 "$goreleaser" build --snapshot --clean --single-target
  bin=$(ls dist/clink-mcp_linux_amd64*/clink-mcp)
  version=$(node -p 'require("./dist/metadata.json").version')
  echo "snapshot $version: $bin"
}

# ---- 4. The binary
binary() {
  local info out commit
  info=$(go version -m "$bin")
  # (Go does not record -ldflags with -trimpath: readelf and `version` check them.)
  for want in 'CGO_ENABLED=0' '-trimpath=true' 'GOOS=linux' 'GOARCH=amd64'; do
    grep -q -F -e "$want" <<<"$info" || { grep -v -E '^\s+dep\s' <<<"$info"; fail "the snapshot binary's build settings lack $want"; }
  done
  if command -v readelf >/dev/null; then
    ! readelf -l "$bin" | grep -q INTERP || fail "the snapshot binary is dynamically linked"
    ! readelf -S "$bin" | grep -q -F '.symtab' || fail "the snapshot binary is not stripped"
  fi
  echo "static, trimmed, stripped: $(du -h "$bin" | cut -f1)"
  out=$("$bin" version)
  echo "$out"
  commit=$(git rev-parse HEAD)
  case "$out" in
    "clink-mcp $version (commit $commit, built "*")") ;;
    *) fail "clink-mcp version printed \"$out\"; want the injected \"$version\" and commit $commit" ;;
  esac
  grep -q SNAPSHOT <<<"$out" || fail "the snapshot's version does not say SNAPSHOT: $out"
  [ "$("$bin" --version)" = "$out" ] || fail "--version and version differ"
  "$bin" demo >"$tmp/demo.txt" 2>"$tmp/demo.err" || { cat "$tmp/demo.txt" "$tmp/demo.err"; fail "clink-mcp demo"; }
  grep -q -F "clink-mcp $version demo" "$tmp/demo.txt" || { head -5 "$tmp/demo.txt"; fail "the demo does not name the version"; }
  echo "demo: $(wc -l <"$tmp/demo.txt") lines, exit 0"
}

# ---- 5. The bundle
bundle() {
  local file="dist/clink-mcp_${version}_linux_amd64.mcpb" out
  "$mcpb" validate mcpb/manifest.json
  [ -f "$file" ] || fail "the build's post hook packed no $file"
  "$mcpb" info "$file"
  "$mcpb" unpack "$file" "$tmp/bundle" >/dev/null
  [ -x "$tmp/bundle/server/clink-mcp" ] || fail "the bundle has no executable server/clink-mcp (its entry point)"
  cmp -s "$tmp/bundle/server/clink-mcp" "$bin" || fail "the bundle's binary is not the snapshot's"
  node -e '
    const m = require(process.argv[1]);
    if (m.version !== process.argv[2]) { console.error(`bundle version ${m.version}, want ${process.argv[2]}`); process.exit(1); }
  ' "$tmp/bundle/manifest.json" "$version"
  # As Claude Desktop starts it: the manifest's command, args and env, with
  # the built-in sandbox turned on and the other settings at their defaults.
  out=$(printf '%s\n' \
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"ci","version":"1"}}}' \
    '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
    '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' |
    CLINK_API_KEY= CLINK_ENV= CLINK_POLICY= CLINK_SANDBOX=true timeout 30 "$tmp/bundle/server/clink-mcp" serve 2>"$tmp/bundle-serve.log") ||
    { cat "$tmp/bundle-serve.log"; fail "the bundle's server over stdio"; }
  node -e '
    const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse);
    const init = lines.find((l) => l.id === 1), list = lines.find((l) => l.id === 2);
    if (init?.result?.serverInfo?.version !== process.argv[1]) { console.error("serverInfo:", JSON.stringify(init)); process.exit(1); }
    const names = (list?.result?.tools ?? []).map((t) => t.name).sort();
    const manifest = require(process.argv[2]).tools.map((t) => t.name).sort();
    if (JSON.stringify(names) !== JSON.stringify(manifest)) { console.error("tools/list:", names, "manifest:", manifest); process.exit(1); }
    console.log(`over stdio: serverInfo.version ${process.argv[1]}, tools ${names.join(", ")}`);
  ' "$version" "$PWD/mcpb/manifest.json" <<<"$out" || fail "the bundle's server did not answer as its manifest says"
}

# ---- 6. server.json
server_json() {
  node mcpb/server-json.mjs dist "$version" >dist/server.json
  CLINK_SERVER_JSON="$PWD/dist/server.json" go test -count=1 -run 'TestServerJSON|TestBundleManifest' ./cmd/clink-mcp
}

timed "node (>= 22) and the MCPB CLI" node_setup
timed "goreleaser $GORELEASER_VERSION" goreleaser_install
timed "goreleaser check" goreleaser_check
timed "goreleaser build --snapshot --single-target (linux/amd64) and its bundle" snapshot
timed "the snapshot binary: build settings, version, demo" binary
timed "the desktop extension bundle: validate, unpack, serve" bundle
timed "server.json against the MCP Registry's schema" server_json

echo "== release steps took"
print_timings
echo "release: 7 passed, 0 failed"
