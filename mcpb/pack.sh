#!/usr/bin/env bash
# Packs the desktop extension bundle (MCPB) of one clink-mcp binary with the
# official MCPB CLI (@anthropic-ai/mcpb, pinned by .ci/mcpb/package-lock.json).
# GoReleaser runs it after each build (.goreleaser.yaml); CI through it.
#
#   bash mcpb/pack.sh setup
#       Node.js >= 22 (.ci/node.sh) and the MCPB CLI (npm ci in .ci/mcpb,
#       skipped when node_modules already matches the lockfile).
#   bash mcpb/pack.sh BINARY OS ARCH VERSION OUTDIR
#       Writes OUTDIR/clink-mcp_VERSION_OS_ARCH.mcpb: mcpb/manifest.json with
#       this version and platform, and BINARY as server/clink-mcp (.exe on
#       Windows), where the manifest's entry point says. OS and ARCH are Go's
#       (linux, darwin, windows; amd64, arm64).
#
# Run from the repository root or anywhere: paths are the repository's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "mcpb/pack.sh: $*" >&2; exit 1; }

node_path() {
  local entries
  entries=$(bash "$root/.ci/node.sh") || die "no Node.js >= 22 (see above)"
  export PATH="$entries:$PATH"
}

mcpb="$root/.ci/mcpb/node_modules/.bin/mcpb"

setup() {
  node_path
  local dir="$root/.ci/mcpb" stamp want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) node $(node --version) npm $(npm --version)"
  stamp="$dir/node_modules/.clink-ci-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$mcpb" ]; then
    echo "mcpb/pack.sh: the MCPB CLI is installed ($("$mcpb" --version))" >&2
    return
  fi
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn) >&2
  echo "$want" >"$stamp"
  echo "mcpb/pack.sh: installed the MCPB CLI $("$mcpb" --version)" >&2
}

if [ "${1:-}" = setup ]; then
  setup
  exit 0
fi
[ $# -eq 5 ] || die "usage: pack.sh setup | pack.sh BINARY OS ARCH VERSION OUTDIR"
bin=$1 goos=$2 goarch=$3 version=${4#v} out=$5
[ -f "$bin" ] || die "no binary at $bin"
[ -x "$mcpb" ] || die "the MCPB CLI is not installed: run bash mcpb/pack.sh setup"
node_path

case "$goos" in
  darwin) platform=darwin exe=clink-mcp ;;
  windows) platform=win32 exe=clink-mcp.exe ;;
  linux) platform=linux exe=clink-mcp ;;
  *) die "no bundle for $goos" ;;
esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/clink-mcpb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/server"
cp "$bin" "$stage/server/$exe"
chmod 755 "$stage/server/$exe"
# The manifest, for this version and platform only.
node - "$root/mcpb/manifest.json" "$stage/manifest.json" "$version" "$platform" "server/$exe" <<'JS'
const fs = require("fs");
const [src, dst, version, platform, entry] = process.argv.slice(2);
const m = JSON.parse(fs.readFileSync(src, "utf8"));
m.version = version;
m.compatibility = { ...(m.compatibility || {}), platforms: [platform] };
m.server.entry_point = entry;
fs.writeFileSync(dst, JSON.stringify(m, null, 2) + "\n");
JS

mkdir -p "$out"
file="$(cd "$out" && pwd)/clink-mcp_${version}_${goos}_${goarch}.mcpb"
# Packing validates the manifest first.
"$mcpb" pack "$stage" "$file" >"$stage.log" 2>&1 || { cat "$stage.log" >&2; rm -f "$stage.log"; die "mcpb pack failed"; }
rm -f "$stage.log"
echo "mcpb/pack.sh: $file ($(du -h "$file" | cut -f1))" >&2
