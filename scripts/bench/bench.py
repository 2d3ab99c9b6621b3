"""The measurements behind docs/BENCHMARKS.md; run through scripts/bench/run, which builds the
binaries, starts a throwaway PostgreSQL 15 (log_connections on, max_connections 200) and
passes its coordinates. Everything is measured side by side in this one run; medians and
percentiles, never single samples, because the machine is shared and noisy."""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

# Set by main() from the command line (scripts/bench/run passes them).
ARGS = argparse.Namespace()
WORK, PORT, PG_BIN = "", 0, ""
USER, PASSWORD, DB = "bench", "bench-pass", "bench_db"
ROOT = os.geteuid() == 0
rows = []  # (section, what, value)
targets = []  # (target, measured, met)


def target(what, measured, met):
    targets.append((what, measured, "met" if met else "**missed**"))


def row(section, what, value):
    rows.append((section, what, value))
    print(f"  {what}: {value}", flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))]


def ms(s):
    return f"{s * 1000:.0f} ms" if s >= 0.01 else f"{s * 1000:.1f} ms"


def dist(xs):
    return f"p50 {ms(pct(xs, 50))} / p95 {ms(pct(xs, 95))} / max {ms(max(xs))} (n={len(xs)})"


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] if ROOT else []) + cmd


def pg_stop():
    subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", f"{WORK}/data", "-m", "fast", "-w", "stop"]),
                   check=True, stdout=subprocess.DEVNULL)


def pg_start(wait):
    subprocess.run(as_pg([f"{PG_BIN}/pg_ctl", "-D", f"{WORK}/data", "-l", f"{WORK}/server.log",
                          "-o", ARGS.pg_opts, "-w" if wait else "-W", "start"]),
                   check=True, stdout=subprocess.DEVNULL)


def sql(q, db="postgres"):
    return subprocess.run(["psql", "-h", f"{WORK}/sock", "-p", str(PORT), "-U", "postgres", "-d", db,
                           "-X", "-qtAc", q], check=True, capture_output=True, text=True).stdout.strip()


def secret(db=DB, port=None):
    return json.dumps({"engine": "postgres", "host": "127.0.0.1", "port": port or PORT, "username": USER,
                       "password": PASSWORD, "dbname": db})


def env(**extra):
    e = {"PATH": os.environ["PATH"], "AURORA_SIDECAR_LOG_FORMAT": "json", "DB_SECRET": secret()}
    e.update(extra)
    return e


def spawn(args, out, **kw):
    err = open(f"{out}.log", "w")
    return subprocess.Popen([ARGS.bin, *args, "--out-dir", out], stdout=subprocess.DEVNULL,
                            stderr=err, env=kw.pop("env", env()), **kw)


def wait4(p):
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_maxrss  # KiB


def timed(cmd, n, **kw):
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        walls.append(time.perf_counter() - t)
    return walls


def peak_rss_kib(args, binary=None):
    """Peak RSS of one `once`, measured by GNU time (a small parent: a child forked from
    this Python process would carry Python's pages in its ru_maxrss until exec)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", binary or ARGS.bin, *args], env=env(), capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    return int(p.stderr.strip().splitlines()[-1])


def pgbench_connection_time(transactions):
    pgb = subprocess.run([f"{PG_BIN}/pgbench", "-n", "-C", "-c", "1", "-j", "1", "-t", str(transactions),
                          "-f", f"{WORK}/select1.sql", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, DB],
                         check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": PASSWORD})
    return float(re.search(r"average connection time = ([0-9.]+) ms", pgb.stdout).group(1)) / 1000


def cold_start():
    """`once` against one libpq login as a process of its own (scripts/bench/pqconnect.c): the
    like-for-like yardstick, what any script or entrypoint that uses libpq pays. pgbench's
    in-process connection time is context. With --baseline-bin, that binary (main's image
    binary) runs interleaved with this one: the A/B of a change."""
    print("==> cold start, database present", flush=True)
    with open(f"{WORK}/select1.sql", "w") as f:
        f.write("select 1;\n")
    bins = {"image": ARGS.static_bin, "release": ARGS.bin}
    if ARGS.baseline_bin:
        bins["baseline"] = ARGS.baseline_bin
    # Each binary its own out-dir: a baseline with another out-dir layout would otherwise
    # rewrite every file on every run.
    out = {k: f"{WORK}/cold-{k}" for k in bins}
    for k, b in bins.items():
        subprocess.run([b, "once", "--out-dir", out[k]], env=env(), check=True, stderr=subprocess.DEVNULL)
    # Interleaved, so all see the same noise: one `once` of each binary (the order rotates:
    # the first process after pgbench's ten meets the server still tidying up after them),
    # one libpq login as a process of its own, then 10 pgbench connections. Twice the usual
    # trials: a trial takes a tenth of a second.
    walls, conns, pq = {k: [] for k in bins}, [], []
    pq_cmd = [ARGS.pqconnect, f"host=127.0.0.1 port={PORT} user={USER} dbname={DB}"] if ARGS.pqconnect else None
    order = sorted(bins)
    for i in range(2 * ARGS.trials):
        for k in order[i % len(order):] + order[:i % len(order)]:
            t = time.perf_counter()
            subprocess.run([bins[k], "once", "--out-dir", out[k]], env=env(), check=True, stderr=subprocess.DEVNULL)
            walls[k].append(time.perf_counter() - t)
        if pq_cmd:
            pq += timed(pq_cmd, 1, env={**os.environ, "PGPASSWORD": PASSWORD})
        conns.append(pgbench_connection_time(10))
    # A fresh, empty out-dir each time (an ECS task's first start: every file is new), and
    # the out-dir on tmpfs (fsync is free there), for the image binary and the baseline,
    # interleaved with one libpq process each round.
    fresh = {k: [] for k in bins if k != "release"}
    tmpfs = []
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    for i in range(ARGS.trials):
        for k in fresh:
            t = time.perf_counter()
            subprocess.run([bins[k], "once", "--out-dir", f"{WORK}/fresh-{k}{i}"], env=env(), check=True,
                           stderr=subprocess.DEVNULL)
            fresh[k].append(time.perf_counter() - t)
        if shm:
            t = time.perf_counter()
            subprocess.run([ARGS.static_bin, "once", "--out-dir", f"{shm}/aurora-sidecar-bench-cold"], env=env(),
                           check=True, stderr=subprocess.DEVNULL)
            tmpfs.append(time.perf_counter() - t)
        if pq_cmd:
            pq += timed(pq_cmd, 1, env={**os.environ, "PGPASSWORD": PASSWORD})
    if shm:
        shutil.rmtree(f"{shm}/aurora-sidecar-bench-cold", ignore_errors=True)
    floor = statistics.median(pq) if pq else None
    conn = statistics.median(conns)
    if floor:
        row("cold", "one libpq login as a process of its own (scripts/bench/pqconnect.c: PQconnectdb + "
            "PQfinish, the system's libpq; interleaved): the yardstick",
            f"median {ms(floor)} (min {ms(min(pq))}, max {ms(max(pq))}, n={len(pq)})")
    what = {"image": "the image's static binary (what ECS runs)", "release": "the release binary (dynamic)",
            "baseline": "baseline (--baseline-bin)"}

    def against_floor(xs):
        return f", {statistics.median(xs) / floor:.2f}x the libpq process" if floor else ""

    for k in order:
        xs = walls[k]
        row("cold", f"aurora-sidecar once, {what[k]}: whole process (start, login, files, ready)",
            f"median {ms(statistics.median(xs))} (min {ms(min(xs))}, max {ms(max(xs))}, n={len(xs)})"
            + against_floor(xs))
    for k, xs in fresh.items():
        row("cold", f"fresh, empty out-dir each run (a task's first start: every file new), {what[k]}",
            f"median {ms(statistics.median(xs))} (min {ms(min(xs))}, max {ms(max(xs))}, n={len(xs)})"
            + against_floor(xs))
    if tmpfs:
        row("cold", "out-dir on tmpfs (no fsync cost), image binary",
            f"median {ms(statistics.median(tmpfs))}" + against_floor(tmpfs))
    if "baseline" in bins:
        for label, a, b in (("database present", walls["image"], walls["baseline"]),
                            ("fresh out-dir", fresh["image"], fresh["baseline"])):
            paired = [x / y for x, y in zip(a, b)]
            row("cold", f"A/B, {label}: image binary / baseline, round by round",
                f"median {statistics.median(paired):.2f}x (p25 {pct(paired, 25):.2f}x, p75 {pct(paired, 75):.2f}x), "
                f"medians {ms(statistics.median(a))} vs {ms(statistics.median(b))}")
    row("cold", "context: libpq's in-process connection time (pgbench -C -c1, average of 10, interleaved)",
        f"median {ms(conn)} (min {ms(min(conns))}, max {ms(max(conns))}); image once / it: "
        f"{statistics.median(walls['image']) / conn:.2f}x")
    true = timed(["/bin/true"], 2 * ARGS.trials)
    row("cold", "spawning /bin/true the same way (in every process figure above, not in pgbench's)",
        f"median {ms(statistics.median(true))}")
    med, med_fresh = statistics.median(walls["image"]), statistics.median(fresh["image"])
    target("cold start <= 0.6x a libpq login process (image binary, database present)",
           f"{med / floor:.2f}x" if floor else "no libpq process measured", bool(floor) and med <= 0.6 * floor)
    target("cold start on a fresh out-dir <= 0.7x a libpq login process (image binary)",
           f"{med_fresh / floor:.2f}x" if floor else "no libpq process measured",
           bool(floor) and med_fresh <= 0.7 * floor)
    psql = timed(["psql", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, "-d", DB, "-X", "-c", "select 1"],
                 ARGS.trials, env={**os.environ, "PGPASSWORD": PASSWORD})
    row("cold", "one psql -c 'select 1'", f"median {ms(statistics.median(psql))}")
    seed = timed(["sh", "scripts/bench/seed.sh", f"{WORK}/seedhome"], 10,
                 env={**os.environ, "DB_SECRET": secret()})
    row("cold", "the seed article's shell path (5x jq, files, psql check, createdb)",
        f"median {ms(statistics.median(seed))}")
    worst = 0
    for k in ("image", "release"):
        rss = [peak_rss_kib(["once", "--out-dir", out[k]], bins[k]) for _ in range(5)]
        row("memory", f"once peak RSS, {k} binary (GNU time %M, database present, 5 runs)",
            f"median {statistics.median(rss)} KiB, max {max(rss)} KiB")
        worst = max(worst, max(rss))
    target("once peak RSS <= 8 MiB (both binaries)", f"{worst} KiB", worst <= 8192)


def pg_isready():
    return subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-q", "-t", "1"]).returncode == 0


def server_log_lines():
    with open(f"{WORK}/server.log", errors="replace") as f:
        return f.readlines()


def sidecar_logins(lines):
    """Logins by the sidecars' user that reached a backend: authorised, or refused by the
    server (57P03 starting up and the like). pg_isready connects as another user."""
    return sum(f"user={USER} " in l and ("connection authorized" in l or "FATAL:" in l) for l in lines)


def wake(outage):
    print(f"==> wake-up after a {outage} s outage ({ARGS.trials} sidecars, {ARGS.trials} 1-second pg_isready loops)", flush=True)
    base = f"{WORK}/wake{outage}"
    os.makedirs(base)
    pg_stop()
    t_stop = time.time()
    sidecars = [spawn(["once", "--wait-timeout", "0"], f"{base}/s{i}") for i in range(ARGS.trials)]
    loops = [subprocess.Popen(["sh", "-c", f"until {PG_BIN}/pg_isready -h 127.0.0.1 -p {PORT} -q -t 1; do sleep 1; done; date +%s.%N > {base}/loop{i}"])
             for i in range(ARGS.trials)]
    time.sleep(max(0, t_stop + outage - time.time()))
    before = len(server_log_lines())
    pg_start(wait=False)
    t_start = time.time()
    while not pg_isready():  # the independent observer: a tight pg_isready loop
        pass
    t_accept = time.time()
    ready = {}
    deadline = time.time() + 60
    while len(ready) < len(sidecars) and time.time() < deadline:
        for i in range(len(sidecars)):
            if i not in ready and os.path.exists(f"{base}/s{i}/ready"):
                ready[i] = time.time()
        time.sleep(0.002)
    for p in sidecars:
        p.wait()
        assert p.returncode == 0, f"sidecar exit {p.returncode}"
    for p in loops:
        p.wait()
    loop_done = [float(open(f"{base}/loop{i}").read()) for i in range(ARGS.trials)]
    over = [t - t_accept for t in ready.values()]
    loop_over = [max(0.0, t - t_accept) for t in loop_done]
    attempts = [json.load(open(f"{base}/s{i}/status.json"))["attempt"] for i in range(ARGS.trials)]
    waited = t_accept - t_stop
    server_logins = sidecar_logins(server_log_lines()[before:])
    row(f"wake{outage}", "aurora-sidecar overshoot (accepting -> ready file)", dist(over))
    target(f"wake-up overshoot p95 <= 250 ms, {outage} s outage", ms(pct(over, 95)), pct(over, 95) <= 0.25)
    row(f"wake{outage}", "1-second pg_isready loop overshoot (accepting -> loop done)", dist(loop_over))
    row(f"wake{outage}", "aurora-sidecar attempts per second while down (refused: no backend, no log line)",
        f"{statistics.median(attempts) / waited:.1f} per sidecar (median {statistics.median(attempts)} attempts in {waited:.1f} s)")
    row(f"wake{outage}", "1-second loop probes per second while down", "1.0 per loop")
    row(f"wake{outage}", "sidecar logins that reached the server after it started (57P03 included)",
        f"{server_logins} for {ARGS.trials} sidecars (accepting {t_accept - t_start:.2f} s after pg_ctl start)")
    return over


class HoldingProxy:
    """A TCP front that holds each new connection `hold` seconds, then forwards it to
    PostgreSQL: what a client sees while Aurora Serverless v2 resumes from 0 ACU."""

    def __init__(self, hold):
        self.hold, self.accepted = hold, 0
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.serve(), self.loop).result()

    async def serve(self):
        await asyncio.start_server(self.handle, "127.0.0.1", self.port)

    async def handle(self, reader, writer):
        self.accepted += 1
        await asyncio.sleep(self.hold)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", PORT)

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)


def slow_wake():
    n = 5
    print(f"==> Aurora-style slow wake: a proxy holds each connection 15 s ({n} sidecars)", flush=True)
    proxy = HoldingProxy(15)
    base = f"{WORK}/slow"
    os.makedirs(base)
    t0 = time.time()
    ps = [spawn(["once", "--port", str(proxy.port)], f"{base}/s{i}") for i in range(n)]
    for p in ps:
        p.wait()
        assert p.returncode == 0
    took = [os.path.getmtime(f"{base}/s{i}/ready") - t0 for i in range(n)]
    attempts = [json.load(open(f"{base}/s{i}/status.json"))["attempt"] for i in range(n)]
    row("slow", "ready after (start -> ready file)", f"min {min(took):.2f} s, max {max(took):.2f} s")
    row("slow", "attempts per sidecar / connections the proxy accepted",
        f"{sorted(set(attempts))} / {proxy.accepted} for {n} sidecars")
    target("slow wake ready <= 15.5 s on the first attempt, no pile-up",
           f"{max(took):.2f} s, attempts {sorted(set(attempts))}, {proxy.accepted} connections",
           max(took) <= 15.5 and set(attempts) == {1} and proxy.accepted == n)


def concurrent(n=100):
    print(f"==> {n} concurrent tasks creating one new database", flush=True)
    db = "bench_concurrent"
    base = f"{WORK}/conc"
    os.makedirs(base)
    before = len(server_log_lines())
    t0 = time.perf_counter()
    ps = [spawn(["once"], f"{base}/s{i}", env=env(DB_SECRET=secret(db))) for i in range(n)]
    codes = [p.wait() for p in ps]
    wall = time.perf_counter() - t0
    time.sleep(0.5)  # let the last disconnections reach the log
    # Every session's start and end from the server log; the peak of their overlap is
    # exact, where sampling pg_stat_activity would miss sessions of a few milliseconds.
    events = []
    for line in server_log_lines()[before:]:
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \S+ \[(\d+)\]", line)
        if m and "connection authorized" in line:
            events.append((m.group(1), 1))
        elif m and "disconnection:" in line:
            events.append((m.group(1), -1))
    events.sort()
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    created = sum('"created":true' in open(f"{base}/s{i}.log").read() for i in range(n))
    row("conc", "exit codes", f"{codes.count(0)} of {n} exited 0")
    exists = sql(f"select count(*) from pg_database where datname = '{db}'")
    row("conc", "databases", f"{exists} exists; {created} task reported creating it")
    row("conc", "wall time (first spawn -> last exit)", f"{wall:.2f} s")
    row("conc", "peak concurrent server sessions (from connection/disconnection log lines)",
        f"{peak} (bound: {n} + a small constant); {sum(d > 0 for _, d in events)} sessions in all")
    target(f"{n} concurrent creators: all exit 0, one database, peak sessions < {n} + 5",
           f"{codes.count(0)} exit 0, {exists} database, peak {peak}",
           codes.count(0) == n and exists == "1" and peak < n + 5)


def soak():
    print("==> run: 2,000 refresh cycles through Secrets Manager (moto DescribeSecret)", flush=True)
    import boto3  # from the moto venv

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    mport = s.getsockname()[1]
    s.close()
    moto = subprocess.Popen([ARGS.moto, "-H", "127.0.0.1", "-p", str(mport)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", mport), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{mport}", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
        client = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws["AWS_ENDPOINT_URL"],
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_secret(Name="bench/db", SecretString=secret())
        out = f"{WORK}/soak"
        e = env(**aws)
        del e["DB_SECRET"]
        p = spawn(["run", "--secret-id", "bench/db", "--refresh-interval", "20ms"], out, env=e)
        samples = {}
        t0 = time.time()
        for goal in (100, 500, 1000, 2000):
            while True:
                try:
                    if json.load(open(f"{out}/status.json")).get("checks", 0) >= goal:
                        break
                except (OSError, ValueError):
                    pass
                assert time.time() - t0 < 400, "too few refresh checks"
                time.sleep(0.05)
            vals = dict(l.split(":", 1) for l in open(f"/proc/{p.pid}/status") if l.startswith(("VmRSS", "VmHWM")))
            samples[goal] = (vals["VmRSS"].split()[0], vals["VmHWM"].split()[0])
        p.terminate()
        p.wait()
        row("memory", "run over Secrets Manager refresh checks: VmRSS / VmHWM KiB at 100, 500, 1,000, 2,000",
            ", ".join(f"{r}/{h}" for r, h in samples.values()) + f" ({time.time() - t0:.0f} s)")
        first, last = int(samples[100][0]), int(samples[2000][0])
        target("run RSS flat over 2,000 Secrets Manager refreshes (growth < 1 %)", f"{first} -> {last} KiB",
               last <= first * 1.01)
    finally:
        moto.terminate()


def sizes():
    print("==> sizes", flush=True)
    stripped = f"{WORK}/stripped"
    shutil.copy(ARGS.bin, stripped)
    subprocess.run(["strip", "--strip-all", stripped], check=True)
    row("size", "release binary (dynamic; strip = true)", f"{os.path.getsize(ARGS.bin):,} bytes")
    row("size", "release binary after strip --strip-all", f"{os.path.getsize(stripped):,} bytes")
    row("size", "image binary (static, profile image, stripped)", f"{os.path.getsize(ARGS.static_bin):,} bytes")
    target("binary <= 6 MB (the image's static binary)", f"{os.path.getsize(ARGS.static_bin) / 1e6:.2f} MB",
           os.path.getsize(ARGS.static_bin) <= 6_000_000)
    if ARGS.static_bin_aarch64:
        size = os.path.getsize(ARGS.static_bin_aarch64)
        row("size", "image binary for aarch64 (static, not PIE, profile image, stripped)", f"{size:,} bytes")
        target("binary <= 6 MB (the arm64 image's static binary)", f"{size / 1e6:.2f} MB", size <= 6_000_000)
    for tag, what in (("aurora-sidecar:local", "container image aurora-sidecar:local (linux/amd64)"),
                      ("aurora-sidecar:local-arm64", "container image aurora-sidecar:local-arm64 (linux/arm64)")):
        img = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True)
        if img.returncode == 0:
            row("size", f"{what}, from scripts/e2e-docker", f"{int(img.stdout):,} bytes")
            target(f"{what} <= 8 MB", f"{int(img.stdout) / 1e6:.2f} MB", int(img.stdout) <= 8_000_000)


def write():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    titles = {
        "size": "Sizes", "cold": "Cold start (database present)", "memory": "Memory",
        "slow": "Aurora-style slow wake", "conc": "100 concurrent tasks, one new database",
    }
    with open(ARGS.out, "w") as f:
        f.write("# Benchmarks\n\n")
        f.write(f"Produced by `scripts/bench/run` on {time.strftime('%Y-%m-%d', time.gmtime())}, commit {commit}, "
                f"{os.cpu_count()} cores, {rustc}, PostgreSQL 15 on loopback. Everything below comes from this one "
                "run, side by side; the machine is shared and noisy, so read medians, percentiles and ratios.\n\n")
        if ARGS.baseline_bin:
            f.write(f"The baseline of the A/B rows: `--baseline-bin {ARGS.baseline_bin}` "
                    f"({os.path.getsize(ARGS.baseline_bin):,} bytes), an image binary built by "
                    "`scripts/build-static` from the commit compared against.\n\n")
        f.write("## Targets\n\n| target | measured | |\n|---|---|---|\n")
        for what, measured, verdict in targets:
            f.write(f"| {what} | {measured} | {verdict} |\n")
        f.write("\n")
        for section in dict.fromkeys(s for s, _, _ in rows):
            title = titles.get(section) or f"Wake-up after a {section[4:]} s outage"
            f.write(f"## {title}\n\n| what | value |\n|---|---|\n")
            for s, what, value in rows:
                if s == section:
                    f.write(f"| {what} | {value} |\n")
            f.write("\n")
        f.write(open("scripts/bench/notes.md").read())
        figures = "target/e2e/figures.md"
        if os.path.exists(figures):
            f.write("\n## Container image and the end-to-end run\n\n"
                    f"From the last `scripts/e2e-docker` run on this machine "
                    f"({time.strftime('%Y-%m-%d', time.gmtime(os.path.getmtime(figures)))}).\n\n"
                    "| what | value |\n|---|---|\n" + open(figures).read())


def main():
    global ARGS, WORK, PORT, PG_BIN
    a = argparse.ArgumentParser()
    for flag in ("--bin", "--static-bin", "--work", "--port", "--pg-bin", "--moto", "--out"):
        a.add_argument(flag, required=True)
    a.add_argument("--pg-opts", required=True,
                   help="the server options the cluster runs with (scripts/lib.sh pg_opts), for restarts")
    a.add_argument("--static-bin-aarch64", help="the arm64 image's static binary, for its size")
    a.add_argument("--baseline-bin", help="another image binary to A/B the cold start against (e.g. main's)")
    a.add_argument("--trials", type=int, default=20)
    a.add_argument("--pqconnect", help="a program making one libpq login (scripts/bench/pqconnect.c)")
    a.add_argument("--outages", default="2,30,120")
    a.add_argument("--only", help="comma-separated sections (sizes,cold,wake,slow,concurrent,soak), "
                                  "for a quick look; write such a run to another --out")
    ARGS = a.parse_args()
    WORK, PORT, PG_BIN = ARGS.work, int(ARGS.port), ARGS.pg_bin
    only = set(ARGS.only.split(",")) if ARGS.only else None
    sections = [("sizes", sizes), ("cold", cold_start),
                ("wake", lambda: [wake(int(o)) for o in ARGS.outages.split(",")]),
                ("slow", slow_wake), ("concurrent", concurrent), ("soak", soak)]
    for name, run in sections:
        if only is None or name in only:
            run()
    write()


if __name__ == "__main__":
    main()
