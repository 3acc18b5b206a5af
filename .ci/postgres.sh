#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the multi-worker Optuna test and print
# its SQLAlchemy URL (`postgres.sh stop` stops it). Installs Debian's postgresql when missing (CI runs as root).
set -euo pipefail
PORT="${PGPORT_TEST:-55432}"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
RUN_AS=()
[ "$(id -u)" = 0 ] && RUN_AS=(runuser -u postgres --)
if [ "${1:-}" = stop ]; then
  d=$(cat /tmp/isic-pg.datadir 2>/dev/null) || exit 0
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$d" -m fast stop >/dev/null || true
  exit 0
fi
PGDATA=$(mktemp -d /tmp/isic-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
"${RUN_AS[@]}" "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
"${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDATA" start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres optuna_test
echo "$PGDATA" > /tmp/isic-pg.datadir
echo "postgresql+psycopg2://postgres@127.0.0.1:$PORT/optuna_test"
