# Shared by the scripts (test, demo, bench, reliability, test-aarch64, build-static, build-image,
# e2e-docker): install what a fresh machine lacks.
# shellcheck shell=bash

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PG_BIN

# apt_install PKG...: Debian packages a fresh machine lacks, without their recommends
# (needs root; the scripts call it only for what is missing).
apt_install() {
  echo "==> installing $*"
  if [ "$(id -u)" != 0 ]; then
    echo "$* missing and not root: install them first" >&2
    return 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL 15 server and client, and openssl, from Debian when missing.
ensure_postgres() {
  local need=()
  [ -x "$PG_BIN/postgres" ] || need+=(postgresql-15)
  command -v psql >/dev/null || need+=(postgresql-client-15)
  command -v openssl >/dev/null || need+=(openssl)
  # tests/pgbouncer.rs: the PgBouncer the sidecar feeds (Debian bookworm's 1.18).
  [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
  [ "${#need[@]}" -eq 0 ] && return 0
  apt_install "${need[@]}"
  # The Debian packages start a cluster and a PgBouncer of their own; ours are started
  # per run.
  pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  service pgbouncer stop >/dev/null 2>&1 || true
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

# ensure_pgbouncer_trixie: Debian trixie's PgBouncer (1.24.1) beside the machine's
# bookworm 1.18, so tests/pgbouncer.rs runs against both: a trixie root file system
# (debootstrap --variant=minbase, about 40 s, once) in /var/tmp, where the postgres user
# can read it, and a wrapper that runs its pgbouncer with trixie's own loader and
# libraries. Exports PGBOUNCER_TRIXIE, the wrapper.
ensure_pgbouncer_trixie() {
  local dir=/var/tmp/aurora-sidecar-pgbouncer-trixie
  if [ ! -x "$dir/pgbouncer" ]; then
    command -v debootstrap >/dev/null || apt_install debootstrap debian-archive-keyring
    echo "==> Debian trixie's PgBouncer into $dir (debootstrap, once)"
    rm -rf "$dir" && mkdir -p "$dir"
    debootstrap --variant=minbase --include=pgbouncer trixie "$dir/root" http://deb.debian.org/debian \
      >"$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log" >&2; return 1; }
    cat >"$dir/pgbouncer" <<SH
#!/bin/sh
R=$dir/root
exec "\$R/lib64/ld-linux-x86-64.so.2" --library-path "\$R/usr/lib/x86_64-linux-gnu:\$R/lib/x86_64-linux-gnu" "\$R/usr/sbin/pgbouncer" "\$@"
SH
    chmod 755 "$dir" "$dir/pgbouncer"
  fi
  export PGBOUNCER_TRIXIE="$dir/pgbouncer"
}

# ensure_aarch64_toolchain: Rust for aarch64 from Debian (rustup's server is out of reach):
# bookworm-security's rustc-web with its x86_64 and aarch64 standard libraries, unpacked
# with dpkg-deb into target/toolchain-aarch64 (the system's rustc is left alone), the
# cross gcc and libc for the linker and ring's C, and qemu-aarch64-static to run the
# result. Versions are whatever bookworm-security has now (each package is pinned to the
# version rustc-web depends on). Exports the variables cargo needs.
ensure_aarch64_toolchain() {
  local root="$PWD/target/toolchain-aarch64" debs pkg ver std llvm
  if [ ! -x "$root/usr/bin/rustc" ] || [ ! -d "$root/usr/lib/rustlib/aarch64-unknown-linux-gnu" ] ||
    [ ! -x "$root/usr/bin/qemu-aarch64-static" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "the aarch64 toolchain is missing and not root: run once as root" >&2
      return 1
    fi
    echo "==> fetching the aarch64 toolchain from Debian into $root"
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    debs=$(mktemp -d)
    (
      cd "$debs" && chmod 755 . &&
        apt-get download -qq -o APT::Sandbox::User=root rustc-web qemu-user-static &&
        ver=$(dpkg-deb -f rustc-web_*.deb Version) &&
        apt-get download -qq -o APT::Sandbox::User=root "libstd-rust-web-dev=$ver" &&
        std=$(dpkg-deb -f libstd-rust-web-dev_*.deb Depends | grep -o 'libstd-rust-web-[0-9.]*') &&
        apt-get download -qq -o APT::Sandbox::User=root "$std=$ver" &&
        llvm=$(dpkg-deb -f "${std}"_*.deb Depends | grep -o 'libllvm[0-9]*' | head -1) &&
        apt-get download -qq -o APT::Sandbox::User=root "$llvm" &&
        # The aarch64 standard library: the same version's arm64 package, fetched from
        # the pool by name (no dpkg --add-architecture on the machine).
        pkg=$(apt-cache show "libstd-rust-web-dev=$ver" | sed -n 's/^Filename: //p' | head -1) &&
        curl -fsSLO "http://deb.debian.org/debian-security/${pkg/_amd64.deb/_arm64.deb}"
    ) >/dev/null
    rm -rf "$root" && mkdir -p "$root"
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
    # Only qemu-aarch64-static is used; the other 30 emulators are 300 MB.
    find "$root/usr/bin" -name 'qemu-*' ! -name qemu-aarch64-static -delete
    rm -rf "$debs"
  fi
  export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export RUSTC="$root/usr/bin/rustc"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  # Host build scripts and proc macros are built by this rustc too: a target directory of
  # its own keeps rustup's x86_64 builds in target/ from being rebuilt each time.
  export CARGO_TARGET_DIR="$PWD/target/aarch64"
}

# ensure_clients: the client matrix's libraries (scripts/clients). Debian's elixir,
# ruby-pg and libpostgresql-jdbc-java (the JDK is on the machine); node-pg unpacked from
# its .debs into target/node-pg (installing it conflicts with the machine's own Node 20);
# psycopg 3 and asyncpg in $VENV. Exports NODE_PG_PATH.
PSYCOPG_VERSION="3.3.9"
ASYNCPG_VERSION="0.32.0"
ensure_clients() {
  local need=()
  command -v elixir >/dev/null || need+=(elixir)
  command -v ruby >/dev/null && ruby -rpg -e '' 2>/dev/null || need+=(ruby-pg)
  [ -e /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
  command -v java >/dev/null || need+=(default-jdk-headless)
  command -v node >/dev/null || need+=(nodejs)
  [ "${#need[@]}" -eq 0 ] || apt_install "${need[@]}"
  local root="$PWD/target/node-pg"
  if [ ! -e "$root/usr/share/nodejs/pg/package.json" ]; then
    echo "==> unpacking node-pg into $root"
    local debs
    debs=$(mktemp -d)
    chmod 755 "$debs"
    apt-get update -qq
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root \
      node-pg node-split2 node-xtend node-readable-stream) >/dev/null
    rm -rf "$root" && mkdir -p "$root"
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
    rm -rf "$debs"
  fi
  export NODE_PG_PATH="$root/usr/share/nodejs"
  if ! "$VENV/bin/python" -c "import psycopg, asyncpg" >/dev/null 2>&1; then
    echo "==> installing psycopg $PSYCOPG_VERSION and asyncpg $ASYNCPG_VERSION into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      "psycopg[binary]==$PSYCOPG_VERSION" "asyncpg==$ASYNCPG_VERSION"
  fi
}
