#!/usr/bin/env bash
# kill -9 of the postmaster while the worker flushes 10,000 events (CRASH_EVENTS): after the
# restart every committed event reaches the receiver at least once, duplicates carry the same
# X-Webhook-Id and the same body, and every delivery ends delivered. The receiver
# (tests/stubs/counting_receiver.mjs) answers after 5 ms so the flush takes a few seconds.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
EVENTS="${CRASH_EVENTS:-10000}"
PORT="${CRASH_RECEIVER_PORT:-18951}"
node "$here/../stubs/counting_receiver.mjs" "$PORT" 5 &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/stats" >/dev/null 2>&1 && break; sleep 0.1; done
stat() { curl -fs "http://127.0.0.1:$PORT/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

read -r mid inv < <(psql_ -tA -F ' ' <<'SQL'
select invoices.act_as((invoices.create_merchant('Crash test') ->> 'id')::uuid) is not null as acting \gset
select current_setting('invoices.merchant_id'),
       invoices.create_invoice(lines => '[{"description": "Crash", "unit_price": 1}]') ->> 'id';
SQL
)
secret=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" \
  -c "select invoices.create_webhook_endpoint('http://127.0.0.1:$PORT/crash', '{invoice.viewed}') ->> 'secret'" | tail -1)
curl -fs "http://127.0.0.1:$PORT/secret?value=$secret" >/dev/null

echo "committing $EVENTS events, then kill -9 of the postmaster mid-flush"
psql_ -c "select count(invoices_internal.emit_events(i, '{invoice.viewed}')) from invoices_internal.invoices i, generate_series(1, $EVENTS) where i.merchant_id = '$mid' and i.id = '$inv'" >/dev/null
for _ in $(seq 400); do [ "$(stat unique)" -ge $((EVENTS / 10)) ] && break; sleep 0.02; done
postmaster=$(head -1 "$PGDATA/postmaster.pid")
kill -9 "$postmaster"
before=$(stat unique)
if [ "$before" -gt 0 ] && [ "$before" -lt "$EVENTS" ]; then
  ok "killed the postmaster (pid $postmaster) after $before of $EVENTS events had arrived"
else
  bad "the kill came mid-flush" "$before of $EVENTS had arrived"
fi
# the backends and the worker notice the postmaster's death and exit; then start it again
# the backends and the worker notice the postmaster's death and exit; until the last one has,
# the old shared memory is in use and the start is refused: retry
started=no
for _ in $(seq 100); do
  if as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 start -l "$PG_LOG" >/dev/null 2>&1; then started=yes; break; fi
  sleep 0.2
done
[ "$started" = yes ] || { bad "PostgreSQL restarts after the crash"; finish; exit 1; }
ok "PostgreSQL restarted (crash recovery)"

committed=$(q "select count(*) from invoices.events where merchant_id = '$mid' and event = 'invoice.viewed'")
expect_eq "every committed event survived the crash" "$committed" "$EVENTS"
deadline=$(( $(date +%s) + 90 ))
while [ "$(stat unique)" -lt "$committed" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/ids" > /tmp/crash_ids.$$
missing=$(psql_ -tA -c "select id from invoices.events where merchant_id = '$mid' and event = 'invoice.viewed'" \
  | python3 -c "import json,sys; got=json.load(open('/tmp/crash_ids.$$')); print(sum(1 for l in sys.stdin if l.strip() and l.strip() not in got))")
rm -f /tmp/crash_ids.$$
expect_eq "after the restart every event reached the receiver at least once (missing)" "$missing" "0"
dups=$(stat duplicates)
expect_eq "duplicates carry the same X-Webhook-Id and body (mismatched bodies)" "$(stat mismatched)" "0"
echo "       ($(stat requests) requests for $committed events: $dups duplicates, re-sent after the crash)"
expect_eq "every signature verified (Node crypto)" "$(stat bad_signatures)" "0"
if wait_for 30 "select count(*) filter (where status <> 'delivered') = 0 and count(*) = $EVENTS from invoices.webhook_deliveries where merchant_id = '$mid'"; then
  ok "every delivery row ends delivered"
else
  bad "every delivery row ends delivered" "$(q "select status, count(*) from invoices.webhook_deliveries where merchant_id = '$mid' group by 1")"
fi
# PostgREST reconnects by itself after the crash recovery
for _ in $(seq 50); do curl -fs "$PGRST_URL/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$PGRST_URL/" >/dev/null && ok "PostgREST serves again after the recovery" || bad "PostgREST serves again"
finish
