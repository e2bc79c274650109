#!/usr/bin/env bash
# The worker is visible in pg_stat_activity, comes back after kill -9 (the postmaster's crash
# recovery restarts it) and after a SIGTERM (pg_terminate_backend), and logs a clean shutdown.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
row=$(q "select backend_type || '|' || application_name || '|' || datname from pg_stat_activity where backend_type = 'invoices worker'")
expect_eq "visible in pg_stat_activity (backend_type|application_name|database)" "$row" "invoices worker|invoices worker|$PGDATABASE"
pid=$(worker_pid)

restarted() {  # old pid, seconds
  local deadline=$(( $(date +%s) + $2 )) new
  while [ "$(date +%s)" -lt "$deadline" ]; do
    new=$(worker_pid)
    if [ -n "$new" ] && [ "$new" != "$1" ]; then echo "$new"; return 0; fi
    sleep 0.2
  done
  return 1
}
echo "SIGTERM"
q "select pg_terminate_backend($pid)" >/dev/null
if new=$(restarted "$pid" 15); then ok "restarted after pg_terminate_backend (pid $pid -> $new)"; else bad "restarted after SIGTERM"; fi
grep -q "\[$pid\] LOG:  invoices worker shutting down (SIGTERM)" "$PG_LOG" && ok "  it logged a clean shutdown" || bad "  it logged a clean shutdown"
pid=$new

echo "kill -9"
kill -9 "$pid"
if new=$(restarted "$pid" 30); then ok "restarted after kill -9 (pid $pid -> $new)"; else bad "restarted after kill -9"; fi
if wait_for 10 "select last_run_at > now() - interval '5 seconds' from invoices.worker_status where task = 'expiry'"; then
  ok "  and runs its tasks again"
else
  bad "  and runs its tasks again"
fi
# PostgREST lost its connections in the crash recovery; it reconnects by itself
for _ in $(seq 50); do curl -fs "$PGRST_URL/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$PGRST_URL/" >/dev/null && ok "PostgREST serves again after the recovery" || bad "PostgREST serves again"
finish
