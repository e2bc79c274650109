#!/usr/bin/env bash
# Stops everything README command 1 started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
pid=$(cat "$LOCAL_DIR/run/postgrest.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  log "stopping PostgREST"
  kill "$pid"
  rm -f "$LOCAL_DIR/run/postgrest.pid"
fi
pid=$(cat "$LOCAL_DIR/run/nginx.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  log "stopping nginx"
  kill "$pid"
fi
pid=$(cat "$LOCAL_DIR/run/anvil.pid" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  log "stopping Anvil"
  kill "$pid"
  rm -f "$LOCAL_DIR/run/anvil.pid"
fi
if [ -f "$PGDATA/PG_VERSION" ] && as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  log "stopping PostgreSQL"
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
log "stopped"
