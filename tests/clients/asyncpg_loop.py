"""asyncpg: host, port, user, database and TLS from DATABASE_URL (postgresql scheme,
sslmode and sslrootcert in it), the password from a callable that reads
AURORA_SIDECAR_PASSWORD_FILE; asyncpg calls it at every connect."""
import asyncio
import os
import sys
import time

import asyncpg

seconds, interval = float(sys.argv[1]), float(sys.argv[2])
password_file = os.environ["AURORA_SIDECAR_PASSWORD_FILE"]


def current_password():
    with open(password_file) as f:
        return f.read()


async def main():
    end = time.time() + seconds
    while time.time() < end:
        try:
            conn = await asyncpg.connect(
                os.environ["DATABASE_URL"], password=current_password, timeout=5
            )
            await conn.fetchval("select current_user")
            await conn.close()
            print("ok", time.time(), flush=True)
        except Exception as e:  # noqa: BLE001
            print("fail", time.time(), str(e).replace("\n", " "), flush=True)
        await asyncio.sleep(interval)


asyncio.run(main())
