#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the ledger tests and print the line
#
#   export MIXSEARCH_TEST_POSTGRES_URL=postgresql+psycopg://mixsearch:mixsearch@127.0.0.1:PORT/mixsearch_test
#
# on stdout (and nothing else there), so callers can `eval "$(bash .ci/postgres.sh)"`.
# Progress and errors go to stderr. Works as root on a fresh Debian/Ubuntu machine that
# has only apt (installs the `postgresql` package when no server binaries are found) and
# as an ordinary user when the binaries are already installed.
#
# The cluster lives in a fresh temporary folder (owned by the `postgres` user when run
# as root, because the server refuses to run as root) and listens on loopback only. It
# is left running; stop it with:  pg_ctl -D "$MIXSEARCH_TEST_POSTGRES_DIR/data" stop
#
# Environment knobs: MIXSEARCH_PG_PORT (default: a free port from 54320 up).
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

BIN=$(find_bin || true)
if [ -z "$BIN" ]; then
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL binaries and no apt-get to install them"
  [ "$(id -u)" = 0 ] || die "no PostgreSQL binaries; run as root to install them with apt-get"
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q postgresql >&2; then
    apt-get update -q >&2
    apt-get install -y -q postgresql >&2
  fi
  BIN=$(find_bin) || die "postgresql installed but initdb not found"
fi

# The server may not run as root: as root, run it as the postgres user (apt creates it).
if [ "$(id -u)" = 0 ]; then
  getent passwd postgres >/dev/null || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

port_free() {
  # A port is free when nothing answers on it.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
PORT=${MIXSEARCH_PG_PORT:-}
if [ -z "$PORT" ]; then
  for p in $(seq 54320 54399); do
    if port_free "$p"; then PORT=$p; break; fi
  done
  [ -n "$PORT" ] || die "no free port in 54320-54399"
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/mixsearch-pg.XXXXXX")
chmod 755 "$DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"

log "initdb in $DIR/data"
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

# Loopback only; the socket lives in the cluster folder so no system folder is needed.
# Enough connections for 8 worker processes with their pools plus the test driver.
log "starting server on 127.0.0.1:$PORT"
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=300" start >&2 \
  || { cat "$DIR/server.log" >&2 2>/dev/null; die "server did not start"; }

PSQL=("$BIN/psql" -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE ROLE mixsearch LOGIN PASSWORD 'mixsearch'" >&2
"${PSQL[@]}" -c "CREATE DATABASE mixsearch_test OWNER mixsearch" >&2

echo "export MIXSEARCH_TEST_POSTGRES_URL=postgresql+psycopg://mixsearch:mixsearch@127.0.0.1:$PORT/mixsearch_test"
echo "export MIXSEARCH_TEST_POSTGRES_DIR=$DIR"
log "ready: postgresql+psycopg://mixsearch:***@127.0.0.1:$PORT/mixsearch_test"
