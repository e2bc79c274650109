#!/usr/bin/env bash
# Stops everything README command 1 started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -f "$PGDATA/PG_VERSION" ] && as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  log "stopping PostgreSQL"
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
log "stopped"
