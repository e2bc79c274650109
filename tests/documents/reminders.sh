#!/usr/bin/env bash
# Reminder e-mails (dunning) through the worker and a real SMTP server (aiosmtpd on loopback):
# the merchant's schedule over HTTP (admin scope, fields named on bad input), then an invoice
# whose reminder falls due while the worker is stopped (SIGSTOP, then kill -9: the postmaster's
# crash recovery starts it again). After the restart exactly one reminder goes out, with its
# event; a further restart sends nothing more. The schedule's time is the merchant's time zone
# (Asia/Kathmandu, UTC+05:45). The sweep's rules in SQL: tests/sql/12_reminders.sql.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
bash "$here/install_tools.sh"
bash "$ROOT/tests/http/install_clients.sh" >/dev/null
work=$(mktemp -d); chmod 777 "$work"
SMTP_PORT=$((PGPORT + 1500 + RANDOM % 500))
"$LOCAL_DIR/venv/bin/python" "$ROOT/tests/stubs/smtp_relay.py" "$SMTP_PORT" "$work/mail" >"$work/relay.log" 2>&1 & relay=$!
stopped=""
cleanup() {
  [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null || true
  kill "$relay" 2>/dev/null || true
  psql_ -qc "alter system reset invoices.smtp_url" -c "alter system reset invoices.smtp_from" \
        -c "alter system reset invoices.smtp_allow_cleartext_auth" -c "select pg_reload_conf()" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && break; sleep 0.1; done
psql_ -qc "alter system set invoices.smtp_url = 'smtp://mailer:s3cret@127.0.0.1:$SMTP_PORT'" -c "alter system set invoices.smtp_allow_cleartext_auth = on" \
      -c "alter system set invoices.smtp_from = 'billing@reminders.test'" -c "select pg_reload_conf()" >/dev/null
API="$PGRST_URL"
read -r mid admin_key write_key < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select invoices.act_as((invoices.create_merchant('Reminder Shop', 'owner@reminders.test') ->> 'id')::uuid) is not null as a \gset
select invoices.create_api_key('admin', '{admin}') ->> 'api_key' as k \gset
select current_setting('invoices.merchant_id'), :'k', invoices.create_api_key('w', '{read,write}') ->> 'api_key';
SQL
)
post() { curl -s -o "$work/resp" -w '%{http_code}' -X POST "$API/rpc/$1" -H "X-API-Key: $2" -H 'Content-Type: application/json' -d "$3"; }
fields() { python3 -c 'import json,sys; print(",".join(e["field"] for e in json.loads(json.load(open(sys.argv[1]))["details"])["errors"]))' "$work/resp"; }

echo "the schedule over HTTP"
expect_eq "a write key may not set it: 403" "$(post set_reminder_schedule "$write_key" '{"days": [0]}')" "403"
expect_eq "a bad time zone and day: 400" "$(post set_reminder_schedule "$admin_key" '{"days": [500], "time_zone": "Moon/Base"}')" "400"
expect_eq "  naming both fields" "$(fields)" "days,time_zone"
expect_eq "  nothing changed" "$(q "select reminder_days::text || ' ' || time_zone from invoices_internal.merchants where id = '$mid'")" "{-3,0,7} UTC"
# the reminder falls due 25 s from now, on the due date itself, in Kathmandu's time
read -r local_time local_date < <(q "select to_char(t, 'HH24:MI:SS'), to_char(t, 'YYYY-MM-DD') from (select (now() + interval '25 seconds') at time zone 'Asia/Kathmandu' as t) x" | tr '|' ' ')
due_epoch=$(( $(date +%s) + 25 ))
expect_eq "the admin key sets {0} at $local_time, Asia/Kathmandu" \
  "$(post set_reminder_schedule "$admin_key" "{\"days\": [0], \"send_at\": \"$local_time\", \"time_zone\": \"Asia/Kathmandu\"}")" "200"

echo "a reminder due while the worker is down"
expect_eq "an invoice due $local_date, e-mailed" \
  "$(post create_invoice "$write_key" "{\"lines\": [{\"description\": \"Retainer\", \"unit_price\": \"50\"}], \"currency\": \"USD\", \"customer_name\": \"Hana\", \"customer_email\": \"hana@example.com\", \"due_date\": \"$local_date\", \"send\": true}")" "200"
inv=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/resp")
number=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["invoice_number"])' "$work/resp")
wait_for 15 "select sent_at is not null from invoices_internal.invoices where merchant_id = '$mid' and id = '$inv'" \
  && ok "  the invoice e-mail went out" || bad "  the invoice e-mail went out"
pid=$(worker_pid)
kill -STOP "$pid"; stopped=$pid
ok "  the worker stopped (SIGSTOP, pid $pid) before the reminder's time"
while [ "$(date +%s)" -le $((due_epoch + 2)) ]; do sleep 0.5; done
expect_eq "  its time passed: nothing sent while the worker was down" \
  "$(q "select count(*) from invoices_internal.invoice_reminders where merchant_id = '$mid'")" "0"
kill -9 "$pid"; kill -CONT "$pid" 2>/dev/null || true; stopped=""
new=""
for _ in $(seq 300); do
  new=$(worker_pid); [ -n "$new" ] && [ "$new" != "$pid" ] && break; new=""; sleep 0.1
done
[ -n "$new" ] && ok "  kill -9: the worker is back (pid $new)" || bad "  the worker came back"
wait_for 30 "select count(*) = 1 from invoices.emails where merchant_id = '$mid' and kind = 'reminder' and status = 'sent'" \
  && ok "after the restart one reminder goes out" || bad "after the restart one reminder goes out" "$(q "select string_agg(status, ',') from invoices.emails where merchant_id = '$mid' and kind = 'reminder'")"
eml=$(grep -l "^X-Envelope-To: hana@example.com" "$work"/mail/*.eml | xargs grep -l "^Subject: Reminder" || true)
expect_eq "  one reminder e-mail at the relay" "$(echo "$eml" | grep -c . || true)" "1"
subject=$("$LOCAL_DIR/venv/bin/python" -c 'import email, email.policy, sys; print(email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)["Subject"])' "$(echo "$eml" | head -1)" 2>/dev/null || true)
expect_eq "  its subject" "$subject" "Reminder: invoice $number from Reminder Shop is due today - 50.00 USD"
expect_eq "  one invoice.reminder_sent event" \
  "$(q "select count(*) from invoices_internal.events where merchant_id = '$mid' and invoice_id = '$inv' and event = 'invoice.reminder_sent'")" "1"
expect_eq "  the reminders view" "$(curl -s "$API/invoice_reminders?select=days,email_status" -H "X-API-Key: $write_key")" '[{"days":0,"email_status":"sent"}]'
q "select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'invoices worker'" >/dev/null
sleep 9   # the restarted worker sweeps again (every 5 s)
expect_eq "another restart sends nothing more" \
  "$(q "select count(*) from invoices_internal.emails where merchant_id = '$mid' and kind = 'reminder'")/$(ls "$work"/mail/*.eml | xargs grep -l "^Subject: Reminder" | wc -l)" "1/1"
finish
