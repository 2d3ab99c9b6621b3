#!/bin/sh
# The seed article's entry script, as teams run it today (for scripts/bench/run only): five jq
# calls on DB_SECRET, DATABASE_URL with the port after the password (its bug, kept),
# ~/.pg_service.conf and ~/.pgpass, then psql to check whether the database exists and
# createdb when it does not. HOME is the first argument.
set -eu
export HOME="$1"
mkdir -p "$HOME"
DB_HOST=$(echo "$DB_SECRET" | jq -r .host)
DB_PORT=$(echo "$DB_SECRET" | jq -r .port)
DB_USER=$(echo "$DB_SECRET" | jq -r .username)
DB_PASS=$(echo "$DB_SECRET" | jq -r .password)
DB_NAME=$(echo "$DB_SECRET" | jq -r .dbname)
export DATABASE_URL="ecto://$DB_USER:$DB_PASS@$DB_HOST/$DB_NAME:$DB_PORT"
cat >"$HOME/.pg_service.conf" <<CONF
[app]
host=$DB_HOST
port=$DB_PORT
dbname=$DB_NAME
user=$DB_USER
CONF
echo "$DB_HOST:$DB_PORT:*:$DB_USER:$DB_PASS" >"$HOME/.pgpass"
chmod 600 "$HOME/.pgpass"
if ! psql "service=app dbname=postgres" -X -tAc "select 1 from pg_database where datname = '$DB_NAME'" | grep -q 1; then
  createdb -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME"
fi
