"""The client matrix: real client libraries against the files aurora-sidecar renders.

Run by scripts/clients (which installs the clients first); writes docs/CLIENTS.md and
exits 1 when any case does not give its expected result.

One PostgreSQL 15 that takes TLS only (hostssl, as Aurora with rds.force_ssl=1): SCRAM for
the app role, PAM for the IAM role (the IAM rig of tests/iam.rs: tests/iam/verify_token.py
recomputes each token with botocore, here with a short maximum age so the first token
"expires" within the run). Secrets Manager is moto_server. Four `aurora-sidecar run`
processes (password and IAM auth, each with the ecto and the postgresql URL scheme, as a
Phoenix app and the other apps would run them) and a few `once` runs for the TLS cases.

Per client (tests/clients/*):
  a  connects with the rendered files and its recipe (verify-full, host 127.0.0.1: the
     certificate's IP SAN)
  b  password rotation under run: ALTER ROLE, then pg_terminate_backend of the role's
     sessions, then the new secret version; new connections succeed again without
     restarting the client (failed attempts and seconds to recovery)
  c  IAM: new connections after the first token has expired succeed
  d  verify-full refuses a server certificate from another CA (the published rds-ca.pem
     swapped for another CA's)
  e  verify-full with a host name (localhost, the certificate's DNS SAN)
  f  sslmode require without a CA: encrypted (the server takes nothing else)
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests/clients"
PHOENIX = ROOT / "deploy/phoenix"
BIN = ROOT / "target/debug/aurora-sidecar"
PG_BIN = pathlib.Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
VENV_PY = pathlib.Path(os.environ["VENV"]) / "bin/python"
NODE_PATH = os.environ["NODE_PG_PATH"]
JDBC_JAR = os.environ.get("JDBC_JAR", "/usr/share/java/postgresql.jar")

APP_USER, APP_DB = "matrix_app", "matrix"
IAM_USER, IAM_DB = "matrix_iam", "matrix_iam"
# Every character the files must escape: pgpass's `:` and `\`, the URL's `@ / ? # %`,
# the shell's quotes and `$`.
PASSWORD_1 = "p@ss:w/rd\\'\"$x #%?1"
PASSWORD_2 = "n3w:p@ss\\'\"$y #%?2"
REGION, ACCESS_KEY, SECRET_KEY = "us-east-1", "AKIDMATRIX", "matrix-secret-key"
TOKEN_MAX_AGE = 8  # seconds the rig accepts a token for (RDS: 900)
STEP = 0.25  # seconds between a client's connection attempts

# The sidecar flags of each file set a client can use. pgjdbc (42.5 here; 42.7 too) drops
# a whole pg_service.conf section with a key it does not know, and channel_binding is
# one: its recipe runs the sidecar with --channel-binding prefer (the service file then
# has no such line; the sidecar's own logins are still SCRAM over verified TLS).
FLAVOURS = {
    "ecto": ["--url-scheme", "ecto"],
    "postgresql": ["--url-scheme", "postgresql"],
    "jdbc": ["--url-scheme", "postgresql", "--channel-binding", "prefer"],
}
# name, how to start it (argv before SECONDS INTERVAL), which file set it uses
CLIENT_TABLE = [
    ("libpq (psql 15)", ["sh", str(CLIENTS / "psql_loop.sh")], "postgresql"),
    ("psycopg 3 (libpq)", [str(VENV_PY), str(CLIENTS / "psycopg_loop.py")], "postgresql"),
    ("Ruby pg (libpq)", ["ruby", str(CLIENTS / "ruby_loop.rb")], "postgresql"),
    ("pgjdbc 42.5", ["java", "-cp", JDBC_JAR, str(CLIENTS / "Loop.java")], "jdbc"),
    ("node-postgres 8.8", ["node", str(CLIENTS / "node_loop.js")], "postgresql"),
    ("asyncpg", [str(VENV_PY), str(CLIENTS / "asyncpg_loop.py")], "postgresql"),
    ("Elixir: Phoenix runtime.exs + configure:", ["elixir", str(CLIENTS / "ecto_probe.exs"), str(PHOENIX)], "ecto"),
]
# What an app that reads DATABASE_URL once does: the control for case b (it must not
# recover: if it did, the rotation would not be testing anything).
CONTROL = ("control: psycopg with DATABASE_URL read once", [str(VENV_PY), str(CLIENTS / "psycopg_loop.py"), "--url"], "postgresql")


def log(*a):
    print("==>", *a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited {r.returncode}: {r.stderr[-3000:]}")
    return r


def as_pg(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return run(cmd, **kw)


def system_python():
    """A python3 the server's user can run (pyenv's under /root is not one), for PAM."""
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if subprocess.run(["runuser", "-u", "postgres", "--", p, "-c", "import json"], capture_output=True).returncode == 0:
            return p
    raise SystemExit("no python3 the postgres user can run, for the IAM rig's PAM verifier")


class World:
    """Everything the cases share; torn down in stop()."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="aurora-sidecar-clients."))
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.pam_file = None
        self.password = PASSWORD_1

    # -- PKI --------------------------------------------------------------------------
    def openssl(self, *args):
        run(["openssl", *args], cwd=self.dir)

    def ca(self, name):
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return self.dir / f"{name}.crt"

    def server_cert(self, ca):
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=matrix server")
        (self.dir / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self.openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                     "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
        if os.geteuid() == 0:
            shutil.chown(self.dir / "server.key", "postgres", "postgres")
        os.chmod(self.dir / "server.key", 0o600)

    # -- PostgreSQL -------------------------------------------------------------------
    def start_postgres(self):
        self.port = free_port()
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        (self.dir / "pwfile").write_text("superpass\n")
        if os.geteuid() == 0:
            run(["chown", "-R", "postgres:postgres", str(self.dir)])
        as_pg([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
               "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", f"--pwfile={self.dir / 'pwfile'}"])
        self.pam_service = f"aurora-sidecar-clients-{os.getpid()}"
        # TLS only, as Aurora with rds.force_ssl=1: a client that drops TLS is refused.
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {IAM_USER} 127.0.0.1/32 pam pamservice={self.pam_service}\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={sock} "
                f"-c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file={self.dir / 'server.crt'} "
                f"-c ssl_key_file={self.dir / 'server.key'}")
        as_pg([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"), "-o", opts, "-w", "start"])
        self.data = data
        self.sock = sock

    def sql(self, statement, db="postgres"):
        return run(["psql", "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", "-d", db, "-X",
                    "-v", "ON_ERROR_STOP=1", "-qtAc", statement]).stdout.strip()

    # -- the IAM rig --------------------------------------------------------------------
    def start_iam_rig(self):
        rig = self.dir / "iam"
        rig.mkdir()
        os.chmod(rig, 0o755)
        shutil.copy(ROOT / "tests/iam/verify_token.py", rig / "verify_token.py")
        site = run([str(VENV_PY), "-c", "import botocore, os; print(os.path.dirname(os.path.dirname(botocore.__file__)))"]).stdout.strip()
        config = {"site_packages": site, "host": "127.0.0.1", "port": self.port, "region": REGION,
                  "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "log": str(rig / "verdicts.log"),
                  "control": str(rig / "control"), "max_age": TOKEN_MAX_AGE}
        (rig / "config.json").write_text(json.dumps(config))
        for f in ["verdicts.log", "control"]:
            (rig / f).write_text("")
            os.chmod(rig / f, 0o666)
        self.pam_file = pathlib.Path("/etc/pam.d") / self.pam_service
        self.pam_file.write_text(
            f"auth required pam_exec.so expose_authtok quiet {system_python()} {rig / 'verify_token.py'} "
            f"{rig / 'config.json'}\naccount required pam_permit.so\n")
        self.sql(f"CREATE ROLE {IAM_USER} LOGIN")
        self.sql(f"CREATE DATABASE {IAM_DB} OWNER {IAM_USER}")

    # -- Secrets Manager --------------------------------------------------------------------
    def start_moto(self):
        self.moto_port = free_port()
        self.spawn([os.environ["MOTO_SERVER"], "-p", str(self.moto_port)], "moto.log")
        self.endpoint = f"http://127.0.0.1:{self.moto_port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.moto_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        self.aws_env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint, "AWS_CONFIG_FILE": "/dev/null",
                        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}

    def secrets(self, *args):
        code = ("import boto3, sys, json; c = boto3.client('secretsmanager', endpoint_url=sys.argv[1]); "
                "getattr(c, sys.argv[2])(**json.loads(sys.argv[3]))")
        run([str(VENV_PY), "-c", code, self.endpoint, *args], env={**os.environ, **self.aws_env})

    def secret_json(self, password):
        return json.dumps({"engine": "postgres", "host": "127.0.0.1", "port": self.port,
                           "username": APP_USER, "password": password, "dbname": APP_DB})

    # -- processes ----------------------------------------------------------------------
    def spawn(self, argv, logname, env=None):
        p = subprocess.Popen(argv, stdout=open(self.dir / logname, "w"), stderr=subprocess.STDOUT,
                             env=env or os.environ, start_new_session=True)
        self.procs.append(p)
        return p

    def sidecar(self, command, out, *flags, iam=False, wait=True):
        out.mkdir(exist_ok=True)
        env = {"PATH": os.environ["PATH"], "AURORA_SIDECAR_LOG_FORMAT": "json", **self.aws_env}
        argv = [str(BIN), command, "--out-dir", str(out), "--sslmode", "verify-full",
                "--sslrootcert", str(self.dir / "matrix-ca.crt"), *flags]
        if command == "run":
            argv += ["--refresh-interval", "1s"]
        if iam:
            argv += ["--iam-auth", "--host", "127.0.0.1", "--port", str(self.port), "--user", IAM_USER,
                     "--database", IAM_DB, "--region", REGION, "--no-create"]
        else:
            argv += ["--secret-id", "matrix-app"]
        if command == "once":
            run(argv, env=env)
            return None
        p = self.spawn(argv, f"sidecar-{out.name}.log", env)
        if wait:
            deadline = time.time() + 60
            while not (out / "ready").exists():
                if p.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"sidecar for {out} did not get ready: {(self.dir / f'sidecar-{out.name}.log').read_text()[-2000:]}")
                time.sleep(0.1)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if self.pam_file:
            self.pam_file.unlink(missing_ok=True)
        if hasattr(self, "data"):
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                            "-m", "immediate", "stop"] if os.geteuid() == 0 else
                           [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                           capture_output=True)
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def start_client(world, argv, out, seconds, tag):
    """A client with the profile of `out` sourced, as the entry scripts do."""
    script = f'. "{out}/application.profile" && exec "$@"'
    env = {"PATH": os.environ["PATH"], "HOME": str(world.dir), "NODE_PATH": NODE_PATH, "LANG": "C.UTF-8"}
    lines = world.dir / f"client-{tag}.out"
    p = subprocess.Popen(["sh", "-c", script, "sh", *argv, str(seconds), str(STEP)], env=env,
                         stdout=open(lines, "w"), stderr=open(world.dir / f"client-{tag}.log", "w"))
    p.lines = lines
    return p


def rows_of(path):
    """(time, ok, message) per attempt line the client has written so far."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0] in ("ok", "fail"):
            rows.append((float(parts[1]), parts[0] == "ok", parts[2] if len(parts) > 2 else ""))
    return rows


def attempts(p):
    """(time, ok, message) per line of a finished client."""
    p.wait(timeout=120)
    return rows_of(p.lines)


def short(message):
    return (message[:140] + "…") if len(message) > 140 else message


def case_once(world, clients, out, expect_ok):
    """Every client, one short run over `out`: (verdict, detail) per client."""
    procs = [(c, start_client(world, c[1], out, 1.5, f"{out.name}-{i}")) for i, c in enumerate(clients)]
    results = {}
    for c, p in procs:
        rows = attempts(p)
        ok = bool(rows) and all(r[1] for r in rows)
        refused = bool(rows) and not any(r[1] for r in rows)
        if expect_ok:
            results[c[0]] = (ok, f"{sum(r[1] for r in rows)}/{len(rows)} connections" if ok else
                             f"failed: {short(next((r[2] for r in rows if not r[1]), 'no attempt'))}")
        else:
            results[c[0]] = (refused, f"refused: {short(rows[0][2])}" if refused else
                             f"{sum(r[1] for r in rows)}/{len(rows)} connected with another CA")
    return results


def case_rotation(world, outs, clients):
    seconds = 30
    started = time.time()
    procs = [(c, start_client(world, c[1], outs[c[2]], seconds, f"rotation-{i}")) for i, c in enumerate(clients)]
    # Rotate once every client connected with the first password (the JVM and Elixir start
    # slowest, and slower still on a loaded machine), at the latest 15 s in.
    deadline = time.time() + 15
    while time.time() < deadline and not all(any(r[1] for r in rows_of(p.lines)) for _, p in procs):
        time.sleep(0.2)
    rotated = time.time()
    world.sql(f"ALTER ROLE {APP_USER} PASSWORD {sql_literal(PASSWORD_2)}")
    world.sql(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{APP_USER}'")
    world.secrets("put_secret_value", json.dumps({"SecretId": "matrix-app", "SecretString": world.secret_json(PASSWORD_2)}))
    world.password = PASSWORD_2
    results = {}
    for c, p in procs:
        rows = attempts(p)
        before = [r for r in rows if r[0] < rotated]
        after = [r for r in rows if r[0] >= rotated]
        failed = [r for r in after if not r[1]]
        last_fail = max((r[0] for r in failed), default=rotated)
        recovered = [r for r in after if r[1] and r[0] > last_fail]
        steady = bool(before) and all(r[1] for r in before[1:])
        if recovered and steady:
            results[c[0]] = (True, f"{len(failed)} failed attempts, recovered {recovered[0][0] - rotated:.1f} s "
                                   f"after ALTER ROLE, {len(recovered)} connections after")
        elif not steady:
            results[c[0]] = (False, f"not connected before the rotation ({len(before)} attempts)")
        else:
            why = short(failed[-1][2]) if failed else "no attempt after the rotation"
            window = seconds - (rotated - started)
            results[c[0]] = (False, f"no recovery in {window:.0f} s ({len(failed)} failed: {why})")
    return results


def case_iam(world, outs, clients):
    seconds = TOKEN_MAX_AGE + 6
    started = time.time()
    procs = [(c, start_client(world, c[1], outs[c[2]], seconds, f"iam-{i}")) for i, c in enumerate(clients)]
    # The token in the files when each client started was signed before `started`: the
    # rig refuses it from TOKEN_MAX_AGE s after `started` at the latest.
    expired_by = started + TOKEN_MAX_AGE
    results = {}
    for c, p in procs:
        rows = attempts(p)
        late = [r for r in rows if r[0] > expired_by]
        ok = bool(late) and all(r[1] for r in rows)
        if ok:
            results[c[0]] = (True, f"{len(late)} connections after the first token expired, all logged in")
        else:
            early = sum(r[1] for r in rows if r[0] <= expired_by)
            refused = [r for r in late if not r[1]]
            why = short(refused[0][2]) if refused else "no connection after expiry"
            results[c[0]] = (False, f"{early} logged in before the first token expired, {len(refused)} of "
                                    f"{len(late)} refused after: {why}")
    return results


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def versions():
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    py = str(VENV_PY)
    return {
        "psql": first_line(["psql", "--version"]),
        "psycopg": first_line([py, "-c", "import psycopg; print(psycopg.__version__, 'libpq', psycopg.pq.version())"]),
        "asyncpg": first_line([py, "-c", "import asyncpg; print(asyncpg.__version__)"]),
        "ruby pg": first_line(["ruby", "-rpg", "-e", "puts PG::VERSION"]),
        "pgjdbc": jar_version(),
        "java": first_line(["sh", "-c", "java -version 2>&1"]),
        "node": first_line(["node", "--version"]),
        "node-postgres": json.loads((pathlib.Path(NODE_PATH) / "pg/package.json").read_text())["version"],
        "elixir": first_line(["sh", "-c", "elixir --version 2>&1 | grep Elixir"]),
    }


def jar_version():
    import zipfile
    with zipfile.ZipFile(JDBC_JAR) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode()
    return next((line.split(":", 1)[1].strip() for line in manifest.splitlines()
                 if line.startswith("Implementation-Version")), "?")


def write_report(matrix, extra, elapsed, run_dir):
    cases = [("a", "connects (verify-full, IP SAN)"), ("b", "password rotation under run"),
             ("c", "IAM token expired"), ("d", "another CA refused"), ("e", "verify-full, DNS name"),
             ("f", "require, no CA")]
    lines = [
        "# Client matrix",
        "",
        "Written by `scripts/clients` (run by `scripts/test`); do not edit. Real client libraries",
        "against the files `aurora-sidecar` rendered, each used with its recipe from the README",
        "(\"Clients: reading the current password\"), against a PostgreSQL 15 that accepts TLS",
        "only. Each client is one long-running process opening a new connection every "
        f"{STEP} s with the configuration it read once at start. The `run` sidecars check the",
        "secret every second (`--refresh-interval 1s`): in production the window after a rotation",
        "is up to the refresh interval (default 5 minutes) plus the client's own retry.",
        "",
        "Cases: " + "; ".join(f"**{k}** {v}" for k, v in cases) + ".",
        "",
        "| client | " + " | ".join(k for k, _ in cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for name, row in matrix.items():
        cells = []
        for k, _ in cases:
            if k not in row:
                cells.append("–")
                continue
            ok, detail = row[k]
            cells.append(("pass: " if ok else "**FAIL**: ") + detail.replace("|", "\\|"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Also checked", ""] + [f"- {e}" for e in extra]
    # The run's temporary directory differs every time; the report should not.
    lines = [line.replace(str(run_dir), "$RUN") for line in lines]
    lines += ["", "## Versions", ""] + [f"- {k}: {v}" for k, v in versions().items()]
    lines += ["", f"Run took {elapsed:.0f} s. Command: `scripts/clients` (or `scripts/test`).", ""]
    (ROOT / "docs/CLIENTS.md").write_text("\n".join(lines))


def main():
    began = time.time()
    world = World()
    try:
        world.ca("matrix-ca")
        world.ca("other-ca")
        world.server_cert("matrix-ca")
        world.start_postgres()
        world.sql(f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD {sql_literal(PASSWORD_1)}")
        world.start_iam_rig()
        world.start_moto()
        world.secrets("create_secret", json.dumps({"Name": "matrix-app", "SecretString": world.secret_json(PASSWORD_1)}))

        outs = {s: world.dir / f"out-{s}" for s in FLAVOURS}
        iam_outs = {s: world.dir / f"iam-{s}" for s in FLAVOURS}
        log("aurora-sidecar run: password and IAM auth, one of each per file set:", ", ".join(FLAVOURS))
        for flavour, flags in FLAVOURS.items():
            world.sidecar("run", outs[flavour], *flags)
            world.sidecar("run", iam_outs[flavour], *flags, iam=True)
        # d: another CA in place of rds-ca.pem; e: a host name; f: require without a CA.
        once = {}
        for scheme, flags in FLAVOURS.items():
            once[("e", scheme)] = world.dir / f"e-{scheme}"
            world.sidecar("once", once[("e", scheme)], *flags, "--host", "localhost")
            once[("f", scheme)] = world.dir / f"f-{scheme}"
            run_require(world, once[("f", scheme)], flags)
            forged, staged = world.dir / f"d-{scheme}", world.dir / f"d-{scheme}-staged"
            world.sidecar("once", staged, *flags, "--app-dir", str(forged))
            shutil.copytree(staged, forged, symlinks=True)
            ca = forged / "rds-ca.pem"
            ca.unlink()  # a link into the version directory: replace it, not its target
            shutil.copy(world.dir / "other-ca.crt", ca)
            once[("d", scheme)] = forged

        clients = CLIENT_TABLE
        matrix = {c[0]: {} for c in clients + [CONTROL]}
        log("a, d, e, f: one short run of every client per file set")
        for scheme_group in FLAVOURS:
            group = [c for c in clients if c[2] == scheme_group]
            for name, r in case_once(world, group, outs[scheme_group], True).items():
                matrix[name]["a"] = r
            for case in ("d", "e", "f"):
                for name, r in case_once(world, group, once[(case, scheme_group)], case != "d").items():
                    matrix[name][case] = r
        log("c: IAM, the first token expires after", TOKEN_MAX_AGE, "s")
        for name, r in case_iam(world, iam_outs, clients + [CONTROL]).items():
            matrix[name]["c"] = r
        log("b: password rotation under run")
        rotation = case_rotation(world, outs, clients + [CONTROL])
        for name, r in rotation.items():
            matrix[name]["b"] = r
        # The control must fail both: it read the old password (the first token) once. If
        # it did not, the case would not be testing anything.
        # In b it must have been connected, then never recovered (not merely slow to start).
        for case in ("b", "c"):
            control_ok, control_detail = matrix[CONTROL[0]][case]
            expected = not control_ok and (case != "b" or control_detail.startswith("no recovery"))
            matrix[CONTROL[0]][case] = (expected, "expected: " + control_detail)

        extra = phoenix_checks(world, outs, once)
        write_report(matrix, [e for e, _ in extra], time.time() - began, world.dir)
        failed = [f"{n} {k}: {d}" for n, row in matrix.items() for k, (ok, d) in row.items() if not ok]
        failed += [e for e, ok in extra if not ok]
        for f in failed:
            print("FAILED:", f, file=sys.stderr)
        print((ROOT / "docs/CLIENTS.md").read_text())
        return 1 if failed else 0
    finally:
        world.stop()


def run_require(world, out, flags):
    """`once` with --sslmode require and no CA bundle at all."""
    out.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "AURORA_SIDECAR_LOG_FORMAT": "json", **world.aws_env}
    run([str(BIN), "once", "--out-dir", str(out), "--sslmode", "require", "--secret-id", "matrix-app", *flags],
        env=env)


def phoenix_checks(world, outs, once):
    """The Phoenix files' other promises: (text, passed) each."""
    results = []
    probe = ["elixir", str(CLIENTS / "ecto_probe.exs"), str(PHOENIX)]

    def probe_with(out, *args):
        script = f'. "{out}/application.profile" && exec "$@"'
        return subprocess.run(["sh", "-c", script, "sh", *probe, *args], capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})

    r = probe_with(outs["ecto"], "--missing-password")
    results.append(("the configure: callback raises on a missing or empty password file, never logs in "
                    f"with the old value: `{short(r.stdout.strip())}`", r.returncode == 0 and "raised for /dev/null" in r.stdout))
    r = probe_with(once[("f", "ecto")], "--config")
    results.append((f"sslmode require → runtime.exs turns TLS on without verification: `{r.stdout.strip()}`",
                    r.returncode == 0 and "ssl: true" in r.stdout and "verify: :verify_none" in r.stdout))
    # verify-full and no CA published: runtime.exs refuses to boot.
    broken = world.dir / "no-ca"
    shutil.copytree(outs["ecto"], broken, symlinks=True)
    profile = (broken / "application.profile").read_text().replace(str(outs["ecto"]), str(broken))
    (broken / "application.profile").unlink()
    (broken / "application.profile").write_text(profile)
    (broken / "rds-ca.pem").unlink()
    r = probe_with(broken, "--config")
    said = next((line.strip() for line in r.stderr.splitlines() if "no CA bundle" in line), "")
    results.append((f"verify-full with no CA file: runtime.exs raises at boot (`{short(said)}`)",
                    r.returncode != 0 and bool(said)))
    # Why pgjdbc's recipe has --channel-binding prefer: the default verify-full set's
    # service file has channel_binding=require, and pgjdbc then drops the whole section.
    jdbc = next(c for c in CLIENT_TABLE if c[2] == "jdbc")
    rows = attempts(start_client(world, jdbc[1], outs["postgresql"], 1.0, "jdbc-default"))
    log_text = (world.dir / "client-jdbc-default.log").read_text()
    results.append(("pgjdbc with the default verify-full set (channel_binding=require in pg_service.conf) "
                    "does not connect: it logs `Got invalid key … channel_binding` and `Definition of service "
                    "[app] not found`, hence its recipe's --channel-binding prefer",
                    bool(rows) and not any(r[1] for r in rows) and "channel_binding" in log_text))
    results += entry_scripts(world, outs)
    return results


STAND_IN = """#!/bin/sh
# A stand-in for the release script `mix release` makes (bin/my_app): records each call
# with what the Phoenix config reads, so the entry scripts' shell logic is tested.
echo "my_app $* | DATABASE_URL=${DATABASE_URL:+set} PGSSLMODE=${PGSSLMODE:-} \
PASSWORD_FILE=${AURORA_SIDECAR_PASSWORD_FILE:-} OUT_DIR=${AURORA_SIDECAR_OUT_DIR:-}" >> "$CALLS"
"""


def entry_scripts(world, outs):
    """rel/overlays/bin/start-with-sidecar and start-exec, with a stand-in release."""
    results = []
    rel = world.dir / "release/bin"
    shutil.copytree(PHOENIX / "rel/overlays/bin", rel)
    (rel / "my_app").write_text(STAND_IN)
    os.chmod(rel / "my_app", 0o755)
    calls = world.dir / "calls"
    base = {"PATH": os.environ["PATH"], "CALLS": str(calls)}

    def calls_text():
        text = calls.read_text() if calls.exists() else ""
        calls.unlink(missing_ok=True)
        return text

    out = outs["ecto"]
    r = subprocess.run([str(rel / "start-with-sidecar")], capture_output=True, text=True,
                       env={**base, "AURORA_SIDECAR_OUT_DIR": str(out)})
    got = calls_text()
    want = [f"my_app eval MyApp.Release.migrate() | DATABASE_URL=set PGSSLMODE=verify-full "
            f"PASSWORD_FILE={out}/password OUT_DIR={out}",
            f"my_app start | DATABASE_URL=set PGSSLMODE=verify-full PASSWORD_FILE={out}/password OUT_DIR={out}"]
    results.append(("start-with-sidecar with a plain `mix release` (stand-in bin/my_app): sources the profile, "
                    "runs bin/migrate, then `my_app start`", r.returncode == 0 and got.splitlines() == want))

    empty = world.dir / "not-ready"
    empty.mkdir()
    began = time.time()
    r = subprocess.run([str(rel / "start-with-sidecar")], capture_output=True, text=True,
                       env={**base, "AURORA_SIDECAR_OUT_DIR": str(empty), "AURORA_SIDECAR_READY_TIMEOUT": "2"})
    results.append((f"start-with-sidecar without `ready`: waits its bound, then exits {r.returncode} "
                    f"after {time.time() - began:.1f} s, the app not started (`{short(r.stderr.strip())}`)",
                    r.returncode == 69 and calls_text() == "" and "no " in r.stderr))

    exec_out = world.dir / "exec-out"
    exec_out.mkdir()
    r = subprocess.run([str(rel / "start-exec")], capture_output=True, text=True,
                       env={**base, **world.aws_env, "AURORA_SIDECAR_BIN": str(BIN),
                            "AURORA_SIDECAR_OUT_DIR": str(exec_out),
                            "AURORA_SIDECAR_SSLROOTCERT": str(world.dir / "matrix-ca.crt"),
                            "DB_SECRET": world.secret_json(world.password)})
    got = calls_text()
    pw = f"{exec_out}/password"
    want = [f"my_app eval MyApp.Release.migrate() | DATABASE_URL=set PGSSLMODE=verify-full PASSWORD_FILE={pw} "
            f"OUT_DIR={exec_out}",
            f"my_app start | DATABASE_URL=set PGSSLMODE=verify-full PASSWORD_FILE={pw} OUT_DIR={exec_out}"]
    results.append(("start-exec (aurora-sidecar exec, then bin/migrate and `my_app start`) with DB_SECRET and "
                    "the default out-dir variable exported: verify-full, the files in AURORA_SIDECAR_OUT_DIR",
                    r.returncode == 0 and got.splitlines() == want and (exec_out / "password").exists()))
    return results


if __name__ == "__main__":
    sys.exit(main())
