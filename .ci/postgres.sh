#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the Postgres store's tests.
#
#   .ci/postgres.sh start DIR   start a cluster in DIR (created if missing) and print its URL;
#                               the URL is also written to DIR/url (mode 0600)
#   .ci/postgres.sh restart DIR restart it (fast shutdown, same port and data): tests of a
#                               database that goes away and comes back
#   .ci/postgres.sh stop DIR    stop it and delete its data
#
# The cluster listens on a free port on 127.0.0.1 only (and on a unix socket in DIR), with a
# superuser "clink" whose password is generated for this cluster: the URL holds it, so keep it
# out of logs (the tests read it from CLINK_TEST_DATABASE_URL and never print it). It is tuned for
# tests (fsync off): never keep data in it. With PG_DURABLE=1 in the environment, start makes a
# cluster that syncs its commits as PostgreSQL does by default (fsync, synchronous_commit and
# full_page_writes on), to compare the Postgres store with SQLite's, which syncs every commit.
#
# PostgreSQL's server binaries are taken from PATH, else from /usr/lib/postgresql/*/bin, else
# installed from Debian's packages (apt-get, as root). initdb refuses to run as root, so when run
# as root the cluster runs as an unprivileged user: "postgres" if it exists (the Debian package
# creates it), else a system user "clink-pg" created here.
set -euo pipefail

usage() { echo "usage: $0 start|restart|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

# find_bin sets bindir to the directory holding initdb and pg_ctl, installing PostgreSQL if needed.
find_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    bindir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    return
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir=$d; return; fi
  done
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres.sh: PostgreSQL is not installed, and installing it needs root" >&2
    exit 1
  fi
  echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir=$d; return; fi
  done
  echo "postgres.sh: PostgreSQL was installed but initdb is not in /usr/lib/postgresql/*/bin" >&2
  exit 1
}

# as_owner runs its arguments as the cluster's unprivileged owner.
as_owner() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  else
    # runuser keeps the environment small; the owner's shell may be nologin.
    runuser -u "$owner" -- "$@"
  fi
}

pick_owner() {
  if [ "$(id -u)" -ne 0 ]; then
    owner=$(id -un)
    return
  fi
  if id postgres >/dev/null 2>&1; then
    owner=postgres
  else
    if ! id clink-pg >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin clink-pg
    fi
    owner=clink-pg
  fi
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local port i
  for i in $(seq 1 200); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "postgres.sh: no free port found" >&2
  exit 1
}

start() {
  find_bin
  pick_owner
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/url" ] && [ -f "$dir/data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; then
    cat "$dir/url"
    return
  fi
  if [ -e "$dir/data" ]; then
    echo "postgres.sh: $dir/data exists but no cluster runs there; stop it first ($0 stop $dir)" >&2
    exit 1
  fi
  chmod 0700 "$dir"
  [ "$(id -u)" -ne 0 ] || chown "$owner" "$dir"
  if ! as_owner test -w "$dir"; then
    echo "postgres.sh: user $owner cannot write $dir (is a parent directory closed to it?)" >&2
    exit 1
  fi
  local password
  password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
  local pwfile="$dir/pwfile"
  (umask 077; printf '%s\n' "$password" >"$pwfile")
  [ "$(id -u)" -ne 0 ] || chown "$owner" "$pwfile"
  as_owner "$bindir/initdb" -D "$dir/data" -U clink --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
    echo "postgres.sh: initdb failed:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$pwfile"
  local sync=off
  [ "${PG_DURABLE:-}" != 1 ] || sync=on
  cat >>"$dir/data/postgresql.conf" <<EOF
# postgres.sh: a throwaway cluster for tests
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 400
fsync = $sync
synchronous_commit = $sync
full_page_writes = $sync
shared_buffers = 128MB
# TestPostgresPlansTheHoldOnce counts plans with it; tracking is off but on its own connections
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = none
EOF
  local port tries
  for tries in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$bindir/pg_ctl" start -D "$dir/data" -w -t 60 -l "$dir/postgres.log" -o "-p $port" >/dev/null; then
      local url="postgres://clink:${password}@127.0.0.1:${port}/postgres?sslmode=disable"
      (umask 077; printf '%s\n' "$url" >"$dir/url")
      echo "$url"
      return
    fi
    # Another process took the port between the look and the start: try another.
    sleep 0.2
  done
  echo "postgres.sh: the cluster did not start; see $dir/postgres.log" >&2
  exit 1
}

stop() {
  if [ ! -d "$dir/data" ]; then
    return
  fi
  find_bin
  pick_owner
  # The data directory's owner runs the server; stop it as that user.
  if [ "$(id -u)" -eq 0 ]; then
    owner=$(stat -c %U "$dir/data")
  fi
  as_owner "$bindir/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
  rm -rf "$dir/data" "$dir/url"
}

restart() {
  find_bin
  pick_owner
  if [ "$(id -u)" -eq 0 ]; then
    owner=$(stat -c %U "$dir/data")
  fi
  as_owner "$bindir/pg_ctl" restart -D "$dir/data" -m fast -w -t 60 -l "$dir/postgres.log" >/dev/null
}

case $cmd in
  start) start ;;
  restart) restart ;;
  stop) stop ;;
  *) usage ;;
esac
