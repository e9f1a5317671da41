#!/usr/bin/env bash
# Set up what `make run` or `make test` needs, and nothing more.
#
#   bash scripts/bootstrap.sh run    # Debian packages, .venv, Redis
#   bash scripts/bootstrap.sh test   # the same, plus PostgreSQL
#
# `run` installs requirements.lock into .venv, `test` requirements-dev.lock
# too; both with --require-hashes (every file checked against the lock).
# Idempotent and fast when everything is in place: Debian packages are
# checked with dpkg, the virtualenv is reinstalled only when a lock it needs
# changes (the hashes of the locks installed are kept in .venv/.lock-hash),
# and a service is started only when it does not answer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
VAR="$ROOT/var"
LOCK="$ROOT/requirements.lock"
DEV_LOCK="$ROOT/requirements-dev.lock"
STAMP="$VENV/.lock-hash"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
# `make run` uses PostgreSQL only when DATABASE_URL says so (the settings'
# default is SQLite); `make test` defaults to the local PostgreSQL.
DATABASE_URL_GIVEN="${DATABASE_URL:+yes}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

log() { printf '[bootstrap] %s\n' "$*"; }
warn() { printf '[bootstrap] WARNING: %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# --- Debian packages ----------------------------------------------------------

APT_UPDATED=0

# Install the named Debian packages that dpkg does not know as installed.
# Without apt (or root) it warns and carries on: the step that needs the
# package fails later with its own message.
ensure_debs() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "apt-get not found; install these yourself: ${missing[*]}"
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq || { warn "apt-get update failed; install yourself: ${missing[*]}"; return 0; }
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || warn "apt-get install failed; install yourself: ${missing[*]}"
}

postgres_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

# --- Python virtualenv --------------------------------------------------------

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# What .venv/.lock-hash says when these lock files are installed: one "name:sha256" per file.
lock_stamp() {
    local lock
    for lock in "$@"; do
        printf '%s:%s\n' "$(basename "$lock")" "$(sha256sum "$lock" | cut -d' ' -f1)"
    done
}

# Create .venv if needed and install the named lock files (requirements.lock,
# plus requirements-dev.lock for tests) unless they are installed already.
# The development set includes the runtime one: after `test`, `run` installs nothing.
ensure_venv() {
    local locks=("$@") lock
    for lock in "${locks[@]}"; do
        [ -f "$lock" ] || die "$(basename "$lock") not found (scripts/lock.sh writes it)"
    done
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(find_python)" || die "Python 3.11 not found (tried python3.11, python3)"
        log "creating .venv with $python"
        if ! "$python" -m venv "$VENV" 2>/dev/null; then
            # Debian's own Python needs its venv package for ensurepip.
            rm -rf "$VENV"
            ensure_debs python3.11-venv
            "$python" -m venv "$VENV"
        fi
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    local want have="" runtime_and_dev=""
    want="$(lock_stamp "${locks[@]}")"
    [ -f "$DEV_LOCK" ] && runtime_and_dev="$(lock_stamp "$LOCK" "$DEV_LOCK")"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ -n "$have" ] && { [ "$have" = "$want" ] || [ "$have" = "$runtime_and_dev" ]; }; then
        return 0
    fi
    local args=() names=()
    for lock in "${locks[@]}"; do
        args+=(-r "$lock")
        names+=("$(basename "$lock")")
    done
    log "installing ${names[*]} into .venv"
    rm -f "$STAMP"  # a failed install must not look installed
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes "${args[@]}"
    echo "$want" >"$STAMP"
}

# --- Services -----------------------------------------------------------------

# Host and port of a URL like scheme://[user:password@]host[:port][/path];
# the second argument is the default port.
url_host_port() {
    local rest="${1#*://}"
    rest="${rest%%/*}"
    rest="${rest##*@}"
    local host="${rest%%:*}" port="$2"
    [ "$rest" != "$host" ] && port="${rest##*:}"
    [ -z "$host" ] && host=127.0.0.1
    [ "$host" = localhost ] && host=127.0.0.1
    echo "$host $port"
}

is_local_host() {
    case "$1" in
        127.*|::1) return 0 ;;
        *) return 1 ;;
    esac
}

redis_answers() {
    [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = "PONG" ]
}

ensure_redis() {
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (Debian package redis-tools)"
    redis_answers && return 0
    local host port
    read -r host port < <(url_host_port "$REDIS_URL" 6379)
    is_local_host "$host" || die "Redis at $REDIS_URL does not answer, and it is not on this machine"
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (Debian package redis-server)"
    log "starting redis-server on $host:$port (data in var/redis)"
    mkdir -p "$VAR/redis"
    redis-server --daemonize yes --bind "$host" --port "$port" \
        --dir "$VAR/redis" --appendonly yes \
        --pidfile "$VAR/redis.pid" --logfile "$VAR/redis.log"
    local i
    for i in $(seq 1 50); do
        redis_answers && return 0
        sleep 0.2
    done
    die "redis-server did not answer within 10 s; see var/redis.log"
}

uses_postgres() {
    case "$DATABASE_URL" in
        postgres://*|postgresql://*|pgsql://*|postgis://*) return 0 ;;
        *) return 1 ;;
    esac
}

pg_ready() {
    local host port
    read -r host port < <(url_host_port "$DATABASE_URL" 5432)
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port"
    else
        # No client tools: a TCP connect is the best we can do.
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
    fi
}

# Start the machine's PostgreSQL cluster unless DATABASE_URL's server answers.
ensure_postgres() {
    uses_postgres || return 0
    pg_ready && return 0
    local host port
    read -r host port < <(url_host_port "$DATABASE_URL" 5432)
    is_local_host "$host" || die "PostgreSQL at $host:$port does not answer, and it is not on this machine"
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        local version
        for version in $(ls /etc/postgresql); do
            [ -d "/etc/postgresql/$version/main" ] || continue
            log "starting PostgreSQL cluster $version/main"
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
                || warn "pg_ctlcluster $version main start failed"
        done
    else
        die "PostgreSQL on $host:$port does not answer and no local cluster (pg_ctlcluster) is installed"
    fi
    local i
    for i in $(seq 1 60); do
        pg_ready && return 0
        sleep 0.5
    done
    die "PostgreSQL on $host:$port is not ready after 30 s"
}

# --- Targets ------------------------------------------------------------------

target="${1:-run}"
case "$target" in
    run)
        ensure_debs redis-server tesseract-ocr tesseract-ocr-eng poppler-utils
        ensure_venv "$LOCK"
        mkdir -p "$VAR"
        ensure_redis
        if [ -n "$DATABASE_URL_GIVEN" ]; then
            ensure_postgres
        fi
        ;;
    test)
        # chromium drives the browser tests; docker-compose validates docker/;
        # faketime runs the clock-skew test's workers minutes off (tests/faults/test_clock_skew.py);
        # prometheus brings promtool, which checks docker/prometheus/ (tests/test_prometheus_rules.py).
        ensure_debs redis-server tesseract-ocr tesseract-ocr-eng poppler-utils chromium docker-compose faketime \
            prometheus
        if uses_postgres && ! postgres_installed && ! pg_ready; then
            ensure_debs postgresql
        fi
        ensure_venv "$LOCK" "$DEV_LOCK"
        mkdir -p "$VAR"
        ensure_redis
        ensure_postgres
        ;;
    *)
        die "usage: $0 run|test"
        ;;
esac
log "ready for $target"
