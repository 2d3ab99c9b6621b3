"""A stand-in for Aurora DSQL's SQL front, for tests/dsql.rs: it ends the client's TLS
with the rig's server certificate, opens its own TLS connection to the rig's PostgreSQL,
and relays the PostgreSQL protocol both ways, byte for byte, with one change: a simple
query `AWS IAM GRANT role TO 'arn'` (DSQL's statement, which PostgreSQL cannot parse) is
run as what it does in DSQL, a row in sys.iam_pg_role_mappings. Every such statement is
appended to the log as received, so the test sees exactly what the sidecar sent.

Usage: dsql_front.py UPSTREAM_PORT CERT KEY LOG   (prints the port it listens on)
"""
import re
import select
import socket
import ssl
import struct
import sys
import threading

upstream_port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GRANT = re.compile(
    r"""\s*AWS\s+IAM\s+GRANT\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+TO\s+'((?:[^']|'')*)'\s*;?\s*""",
    re.IGNORECASE,
)


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def literal(s):
    return "'" + s.replace("'", "''") + "'"


def rewrite(query):
    """The query a 'Q' message carries, or what DSQL's grant does in PostgreSQL's terms."""
    m = GRANT.fullmatch(query)
    if not m:
        return query
    with open(log, "a") as f:
        f.write(query + "\n")
    role, arn = m.group(1), m.group(2).replace("''", "'")
    role = role[1:-1].replace('""', '"') if role.startswith('"') else role.lower()
    # DSQL refuses a grant for a role that does not exist: so does this (a NULL role name).
    return (
        "INSERT INTO sys.iam_pg_role_mappings (arn, pg_role_name) SELECT "
        f"{literal(arn)}, (SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = {literal(role)})"
    )


def forward(pending, started):
    """The whole messages at the head of `pending` (client to server), rewritten; the rest
    stays for the next read. The first message is the startup message (no type byte)."""
    out = b""
    while True:
        head = 1 if started else 0
        if len(pending) < head + 4:
            return out, pending, started
        (length,) = struct.unpack("!i", pending[head:head + 4])
        if len(pending) < head + length:
            return out, pending, started
        kind, body = pending[:head], pending[head + 4:head + length]
        pending = pending[head + length:]
        if kind == b"Q":
            body = rewrite(body[:-1].decode("utf-8")).encode("utf-8") + b"\0"
        out += kind + struct.pack("!i", len(body) + 4) + body
        started = True


def relay(client, server):
    """One thread for both directions: Python's TLS sockets are not for two threads."""
    pending, started = b"", False
    try:
        while True:
            ready = [s for s in (client, server) if s.pending()]
            if not ready:
                ready, _, _ = select.select([client, server], [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                if s is server:
                    client.sendall(data)
                else:
                    out, pending, started = forward(pending + data, started)
                    server.sendall(out)
    except (OSError, ssl.SSLError, UnicodeDecodeError):
        pass
    finally:
        client.close()
        server.close()


def serve(raw):
    try:
        if read_exact(raw, 8) != SSL_REQUEST:
            raw.close()
            return
        raw.sendall(b"S")
        server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_side.load_cert_chain(cert, key)
        client = server_side.wrap_socket(raw, server_side=True)
        up = socket.create_connection(("127.0.0.1", upstream_port))
        up.sendall(SSL_REQUEST)
        if read_exact(up, 1) != b"S":
            raise EOFError
        client_side = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_side.check_hostname = False
        client_side.verify_mode = ssl.CERT_NONE
        server = client_side.wrap_socket(up)
    except (EOFError, OSError, ssl.SSLError):
        raw.close()
        return
    relay(client, server)


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
