#!/bin/sh
# libpq through psql: PGSERVICE, PGSERVICEFILE and PGPASSFILE from the profile; psql is
# one process per connection, so each one reads pg_service.conf and pgpass afresh.
end=$(($(date +%s) + ${1%.*}))
while [ "$(date +%s)" -lt "$end" ]; do
  if out=$(psql -X -qtAc 'select current_user' 2>&1); then
    echo "ok $(date +%s.%N)"
  else
    echo "fail $(date +%s.%N) $(echo "$out" | tr '\n' ' ')"
  fi
  sleep "$2"
done
