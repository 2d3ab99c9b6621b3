"""psycopg 3 (libpq): psycopg.connect("") takes PGSERVICE/PGSERVICEFILE/PGPASSFILE from
the environment; libpq reads pgpass at every connect, so a rotated password is used by the
next connection. With --url it connects with DATABASE_URL instead (the password read once:
the control that shows what a URL-only app does after a rotation)."""
import os
import sys
import time

import psycopg

url_once = "--url" in sys.argv
args = [a for a in sys.argv[1:] if a != "--url"]
seconds, interval = float(args[0]), float(args[1])
conninfo = os.environ["DATABASE_URL"] if url_once else ""
end = time.time() + seconds
while time.time() < end:
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            conn.execute("select current_user").fetchone()
        print("ok", time.time(), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is a data point
        print("fail", time.time(), str(e).replace("\n", " "), flush=True)
    time.sleep(interval)
