#!/bin/sh
# Stand-in for the official postgres image's entrypoint, for scripts/e2e-docker: on the
# first start, initdb with POSTGRES_USER / POSTGRES_PASSWORD (scram-sha-256 over TCP from
# anywhere), then run the server as the postgres user. Any other command runs as given.
set -eu
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec runuser -u postgres -- "$0" postgres "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pwfile"
  initdb -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
