#!/usr/bin/env bash
# Throwaway PostgreSQL on loopback for tests and load runs. Source it, then:
#   start_postgres   # sets POSTGRES_URL (postgres://postgres@127.0.0.1:<port>/caregate)
#   stop_postgres
# initdb and pg_ctl refuse to run as root, so as root they run as the postgres user.

find_pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    local bin
    bin="$(find_pg_bin)"
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "== installing PostgreSQL (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin="$(find_pg_bin)"
    fi
    PG_DIR="$(mktemp -d /tmp/caregate-pg.XXXXXX)"
    PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_DIR"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres >"$PG_DIR/initdb.log" 2>&1
    "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c max_connections=300" start >/dev/null
    "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres caregate
    PG_BIN="$bin"
    PG_AS=("${as[@]}")
    POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/caregate?sslmode=disable"
    echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}

# Run as a command (for tests that stop and restart their own server):
#   scripts/postgres.sh start          # prints "<directory> <url>"
#   scripts/postgres.sh pause DIR      # fast shutdown, data kept
#   scripts/postgres.sh resume DIR     # starts it again on the same port
#   scripts/postgres.sh stop DIR       # stops it and deletes its files
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    case "${1:-}" in
        start)
            start_postgres >/dev/null
            echo "$PG_PORT" >"$PG_DIR/port"
            echo "$PG_BIN" >"$PG_DIR/bin"
            echo "$PG_DIR $POSTGRES_URL"
            ;;
        pause)
            pg_as "$(cat "$2/bin")/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null
            ;;
        resume)
            pg_as "$(cat "$2/bin")/pg_ctl" -D "$2/data" -l "$2/server.log" -w \
                -o "-c listen_addresses=127.0.0.1 -p $(cat "$2/port") -c unix_socket_directories=$2 -c fsync=off -c max_connections=300" start >/dev/null
            ;;
        stop)
            pg_as "$(cat "$2/bin")/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null 2>&1 || true
            rm -rf "$2"
            ;;
        *) echo "usage: $0 start | pause DIR | resume DIR | stop DIR" >&2; exit 2 ;;
    esac
fi
