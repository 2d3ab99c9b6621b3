# Shared by scripts/test, scripts/demo, scripts/bench and scripts/reliability: install what a fresh machine lacks.
# shellcheck shell=bash

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PG_BIN

# PostgreSQL 15 server and client, and openssl, from Debian when missing.
ensure_postgres() {
  local need=()
  [ -x "$PG_BIN/postgres" ] || need+=(postgresql-15)
  command -v psql >/dev/null || need+=(postgresql-client-15)
  command -v openssl >/dev/null || need+=(openssl)
  [ "${#need[@]}" -eq 0 ] && return 0
  echo "==> installing ${need[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "${need[*]} missing and not root: install them or set PG_BIN" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a cluster of its own; ours are started per run.
  pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
}

# moto[server] in a venv (target/moto-venv unless AURORA_SIDECAR_VENV says otherwise);
# exports MOTO_SERVER for the tests and VENV for the scripts' own Python.
MOTO_VERSION="5.2.5"
ensure_moto() {
  VENV="${AURORA_SIDECAR_VENV:-$PWD/target/moto-venv}"
  if ! "$VENV/bin/python" -c "import moto" >/dev/null 2>&1; then
    echo "==> creating $VENV with moto[server]==$MOTO_VERSION"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  export VENV MOTO_SERVER="$VENV/bin/moto_server"
}

# Runs a PostgreSQL server program as a user it accepts (it refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# pg_opts DIR PORT [EXTRA]: the server options of every throwaway cluster the scripts start
# (TCP on 127.0.0.1:PORT, the socket in DIR/sock, no fsync), plus EXTRA.
pg_opts() {
  echo "-c listen_addresses=127.0.0.1 -c port=$2 -c unix_socket_directories=$1/sock -c fsync=off${3:+ $3}"
}

# start_cluster DIR PORT [EXTRA]: initdb (scram-sha-256 over TCP, trust on the socket) and
# start with pg_opts.
start_cluster() {
  local dir=$1 port=$2 extra=${3:-}
  mkdir -p "$dir/sock"
  echo "superpass" >"$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-sync --pwfile="$dir/pwfile" >"$dir/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "$(pg_opts "$dir" "$port" "$extra")" start >/dev/null
}

stop_cluster() {
  local dir=$1
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# superuser_sql DIR PORT SQL
superuser_sql() {
  psql -h "$1/sock" -p "$2" -U postgres -d postgres -X -v ON_ERROR_STOP=1 -qtAc "$3"
}
