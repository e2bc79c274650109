#!/usr/bin/env bash
# Recurring invoices through PostgREST and the worker: create_schedule over HTTP (a 400 naming
# every bad field, nothing written), then a schedule whose first run is due at once, made while
# the worker is killed (kill -9) again and again around it: each run makes exactly one invoice,
# none is lost. Then the views over HTTP, pause, resume and cancel. The rules in SQL:
# tests/sql/13_schedules.sql.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
work=$(mktemp -d)
stopped=""
trap '[ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null; rm -rf "$work"' EXIT
API="$PGRST_URL"
read -r mid key < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select invoices.act_as((invoices.create_merchant('Schedule Shop') ->> 'id')::uuid) is not null as a \gset
select current_setting('invoices.merchant_id'), invoices.create_api_key('w', '{read,write}') ->> 'api_key';
SQL
)
post() { curl -s -o "$work/resp" -w '%{http_code}' -X POST "$API/rpc/$1" -H "X-API-Key: $key" -H 'Content-Type: application/json' -d "$2"; }
get() { curl -s "$API/$1" -H "X-API-Key: $key"; }
fields() { python3 -c 'import json,sys; print(",".join(e["field"] for e in json.loads(json.load(open(sys.argv[1]))["details"])["errors"]))' "$work/resp"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$work/resp"; }
wait_worker() {  # old pid: until another worker runs
  local new=""
  for _ in $(seq 300); do new=$(worker_pid); [ -n "$new" ] && [ "$new" != "$1" ] && { echo "$new"; return 0; }; sleep 0.1; done
  return 1
}

echo "create_schedule over HTTP"
expect_eq "bad input: 400" "$(post create_schedule '{"lines": [{"description": "x", "unit_price": "abc"}], "frequency": "fortnightly", "every": 0, "day_of_month": 3, "count": 0, "due_days": -1}')" "400"
expect_eq "  naming every bad field" "$(fields)" "frequency,every,day_of_month,count,due_days,lines[0].unit_price"
expect_eq "  nothing written" "$(q "select count(*) from invoices_internal.schedules where merchant_id = '$mid'")" "0"

echo "exactly one invoice per run across kill -9"
pid=$(worker_pid)
kill -STOP "$pid"; stopped=$pid
expect_eq "a daily schedule of 2 invoices, its first run due now (worker stopped)" \
  "$(post create_schedule '{"lines": [{"description": "Daily digest", "unit_price": "2.50"}], "frequency": "daily", "count": 2, "currency": "USD", "customer_email": "ivy@example.com", "send": false}')" "200"
sid=$(field id)
# the worker wakes and is killed while it works on the run, three times, at different moments
kills=0
for delay in 0.02 0.15 0.4; do
  kill -CONT "$pid" 2>/dev/null || true
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)) || true
  stopped=""
  pid=$(wait_worker "$pid") || { bad "the worker came back"; break; }
  kill -STOP "$pid"; stopped=$pid
done
expect_eq "  the worker was killed around the run, three times" "$kills" "3"
made_while=$(q "select count(*) from invoices_internal.schedule_runs where merchant_id = '$mid'")
kill -CONT "$pid"; stopped=""
wait_for 20 "select count(*) = 1 from invoices_internal.schedule_runs where merchant_id = '$mid'" \
  && ok "  then the run is made (made before the last kill: $made_while)" || bad "  then the run is made"
sleep 3   # a few more sweeps
expect_eq "  one invoice for run 1, and one run row" \
  "$(q "select count(*) from invoices_internal.invoices where merchant_id = '$mid' and metadata ->> 'schedule_id' = '$sid'")/$(q "select count(*) from invoices_internal.schedule_runs where merchant_id = '$mid'")" "1/1"
expect_eq "  one schedule.invoice_created event" \
  "$(q "select count(*) from invoices_internal.events where merchant_id = '$mid' and event = 'schedule.invoice_created'")" "1"
expect_eq "  the schedule: 1 made, next run tomorrow" \
  "$(q "select invoices_made || ' ' || (next_run_date - (now() at time zone 'UTC')::date) from invoices_internal.schedules where id = '$sid'")" "1 1"

echo "views and changes over HTTP"
expect_eq "GET /schedules" "$(get "schedules?select=status,invoices_made,count" )" '[{"status":"active","invoices_made":1,"count":2}]'
expect_eq "GET /upcoming_runs: the one run left" "$(get "upcoming_runs?select=run" )" '[{"run":2}]'
expect_eq "pause" "$(post pause_schedule "{\"id\": \"$sid\"}") $(field status)" "200 paused"
expect_eq "  no upcoming runs while paused" "$(get "upcoming_runs?select=run")" '[]'
expect_eq "resume" "$(post resume_schedule "{\"id\": \"$sid\"}") $(field status)" "200 active"
expect_eq "cancel" "$(post cancel_schedule "{\"id\": \"$sid\"}") $(field status)" "200 cancelled"
expect_eq "  cancel again: 409" "$(post cancel_schedule "{\"id\": \"$sid\"}")" "409"
expect_eq "an unknown schedule: 404" "$(post pause_schedule '{"id": "junk"}')" "404"
expect_eq "  its invoice stays" "$(q "select status from invoices_internal.invoices where merchant_id = '$mid' and metadata ->> 'schedule_id' = '$sid'")" "draft"
finish
