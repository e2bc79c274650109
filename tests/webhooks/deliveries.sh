#!/usr/bin/env bash
# Webhooks end to end: the worker delivers events from the outbox to a real local receiver
# (tests/stubs/webhook_receiver.py), which verifies both signatures with Python's hmac; Node's
# crypto verifies the logged requests again. A receiver answering 500, one hanging past the
# timeout and a refused connection follow the (shortened) retry schedule to the dead letter;
# redeliver then delivers. verify_webhook_signature agrees with the receivers.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
PORT="${WEBHOOK_RECEIVER_PORT:-18900}"
work=$(mktemp -d)
log="$work/received.jsonl"; touch "$log"
python3 "$here/../stubs/webhook_receiver.py" "$PORT" "$log" &
receiver=$!
restore() {
  kill $receiver 2>/dev/null || true
  { alter_system "reset invoices.webhook_retry_schedule"; alter_system "reset invoices.webhook_timeout_ms"; } 2>/dev/null || true
  rm -rf "$work"
}
trap restore EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT/control/fix?x" >/dev/null 2>&1 && break; sleep 0.1; done
# the receiver starts "broken" again for /fail (restart it cleanly)
kill $receiver; sleep 0.2; python3 "$here/../stubs/webhook_receiver.py" "$PORT" "$log" & receiver=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT/control/secret?name=probe&secret=x" >/dev/null 2>&1 && break; sleep 0.1; done
# a short schedule for the test: three retries one second apart, 1 s timeout
alter_system "set invoices.webhook_retry_schedule = '1s,1s,1s'"
alter_system "set invoices.webhook_timeout_ms = 1000"
sleep 0.5
R="http://127.0.0.1:$PORT"
out=$(psql_ -tA <<SQL
select invoices.act_as((invoices.create_merchant('Webhook test') ->> 'id')::uuid) is not null as acting \gset
select invoices.create_webhook_endpoint('$R/ok/main') ->> 'secret';
select invoices.create_webhook_endpoint('$R/fail/flaky', '{invoice.created}') ->> 'secret';
select invoices.create_webhook_endpoint('$R/hang/slow', '{invoice.created}') ->> 'secret' is not null;
select invoices.create_webhook_endpoint('http://127.0.0.1:1/refused', '{invoice.created}') ->> 'secret' is not null;
select current_setting('invoices.merchant_id');
SQL
)
main_secret=$(sed -n 1p <<< "$out"); flaky_secret=$(sed -n 2p <<< "$out"); mid=$(sed -n 5p <<< "$out")
curl -s "$R/control/secret?name=main&secret=$main_secret" >/dev/null
curl -s "$R/control/secret?name=flaky&secret=$flaky_secret" >/dev/null
curl -s "$R/control/secret?name=callback&secret=cb-secret" >/dev/null
case "$main_secret" in whsec_*) ok "the endpoint secret is shown once (whsec_…)" ;; *) bad "endpoint secret" "$main_secret" ;; esac
expect_eq "the secret is not in the webhook_endpoints view" \
  "$(q "select count(*) from invoices.webhook_endpoints e where to_jsonb(e)::text like '%whsec_%'")" "0"

inv=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_invoice(lines => '[{\"description\": \"Hooked\", \"unit_price\": 42}]', callback_url => '$R/ok/callback', callback_secret => 'cb-secret', send => true) ->> 'id'" | tail -1)
echo "delivery to a healthy receiver"
if wait_for 3 "select count(*) >= 4 from invoices.webhook_deliveries d join invoices.events v on v.merchant_id = d.merchant_id and v.id = d.event_id where v.invoice_id = '$inv' and d.status = 'delivered'"; then
  ok "created and finalized events delivered to the endpoint and the invoice callback"
else
  bad "delivered" "$(q "select url, status, last_error from invoices.webhook_deliveries where merchant_id = '$mid'")"
fi
expect_eq "the events exist, in the outbox" \
  "$(q "select string_agg(event, ',' order by created_at) from invoices.events where invoice_id = '$inv'")" "invoice.created,invoice.finalized"
lat=$(python3 - "$log" "$inv" <<'PY'
import json, sys, datetime
worst = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    body = json.loads(e["body"])
    if body["data"]["id"] != sys.argv[2] or "/ok/" not in e["path"]:
        continue
    created = datetime.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
    worst = max(worst, e["received"] - created)
print(f"{worst:.3f}")
PY
)
awk -v l="$lat" 'BEGIN { exit !(l < 1.0) }' && ok "committed event -> receipt within a second (worst ${lat}s)" || bad "within a second" "$lat"
checks=$(python3 - "$log" "$inv" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if json.loads(r["body"])["data"]["id"] == sys.argv[2] and "/ok/" in r["path"]]
print(len(rows), all(r["plain_ok"] and r["stamped_ok"] for r in rows),
      all(r["headers"]["x-webhook-id"] == json.loads(r["body"])["id"] for r in rows),
      sorted({r["headers"]["x-webhook-event"] for r in rows}) == ["invoice.created", "invoice.finalized"],
      all(set(json.loads(r["body"])) == {"id", "event", "timestamp", "data"} for r in rows))
PY
)
expect_eq "4 requests; both signatures valid (Python hmac); X-Webhook-Id = event id; events; body shape" "$checks" "4 True True True True"
node_check=$(node - "$log" "$main_secret" <<'JS'
const fs = require('fs'), crypto = require('crypto');
const [log, secret] = process.argv.slice(2);
let good = 0, total = 0;
for (const line of fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
  const r = JSON.parse(line);
  if (r.name !== 'main') continue;
  total++;
  const plain = crypto.createHmac('sha256', secret).update(r.body).digest('hex');
  const [t, v1] = r.headers['webhook-signature'].split(',').map(p => p.split('=')[1]);
  const stamped = crypto.createHmac('sha256', secret).update(`${t}.${r.body}`).digest('hex');
  if (crypto.timingSafeEqual(Buffer.from(plain), Buffer.from(r.headers['x-webhook-signature'])) && stamped === v1) good++;
}
console.log(`${good}/${total}`);
JS
)
case "$node_check" in "0/0"|"") bad "Node crypto verifies the logged requests" "$node_check" ;; *) [ "${node_check%/*}" = "${node_check#*/}" ] && ok "Node crypto verifies every logged request ($node_check)" || bad "Node crypto" "$node_check" ;; esac
body=$(python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; r=[x for x in rows if x['name']=='main'][0]; print(json.dumps([r['body'], r['headers']['x-webhook-signature'], r['headers']['webhook-signature']]))" "$log")
expect_eq "verify_webhook_signature accepts both headers and refuses a tampered body" \
  "$(psql_ -tA -v b="$body" -v s="$main_secret" <<'SQL'
select invoices.verify_webhook_signature((:'b'::jsonb)->>0, (:'b'::jsonb)->>1, :'s') || ' ' ||
       invoices.verify_webhook_signature((:'b'::jsonb)->>0, (:'b'::jsonb)->>2, :'s') || ' ' ||
       invoices.verify_webhook_signature((:'b'::jsonb)->>0 || ' ', (:'b'::jsonb)->>1, :'s');
SQL
)" \
  "true true false"

echo "failing receivers: retry schedule, dead letter, redeliver"
if wait_for 15 "select count(*) = 3 from invoices.webhook_deliveries where merchant_id = '$mid' and status = 'dead'"; then
  ok "500, timeout and refused connection end dead-lettered"
else
  bad "dead letter" "$(q "select url, status, attempts, last_error from invoices.webhook_deliveries where merchant_id = '$mid'")"
fi
expect_eq "  each after 4 attempts (1 + 3 retries of the schedule)" \
  "$(q "select string_agg(distinct attempts::text, ',') from invoices.webhook_deliveries where merchant_id = '$mid' and status = 'dead'")" "4"
expect_eq "  attempts about 1 s apart" \
  "$(q "select bool_and(gap between 0.9 and 3) from (select extract(epoch from (a.attempt ->> 'started_at')::timestamptz - lag((a.attempt ->> 'started_at')::timestamptz) over (partition by d.id order by (a.attempt ->> 'attempt')::int)) gap from invoices.webhook_deliveries d cross join jsonb_array_elements(d.attempt_log) as a(attempt) where d.merchant_id = '$mid') g where gap is not null")" "t"
errs=$(q "select string_agg(coalesce(last_error, ''), ' | ' order by url) from invoices.webhook_deliveries where merchant_id = '$mid' and status = 'dead'")
case "$errs" in *"HTTP 500"*"timed out"*) ok "  errors recorded: $errs" ;; *) bad "  errors recorded" "$errs" ;; esac
expect_eq "  the 500's response is kept (first 1 KiB)" \
  "$(q "select max(length(a.attempt ->> 'response')) from invoices.webhook_deliveries d cross join jsonb_array_elements(d.attempt_log) as a(attempt) where d.merchant_id = '$mid' and (a.attempt ->> 'status_code')::int = 500")" "1024"
curl -s "$R/control/fix" >/dev/null
did=$(q "select d.id from invoices.webhook_deliveries d where d.merchant_id = '$mid' and d.url like '%/fail/%'")
psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.redeliver($did) ->> 'status'" >/dev/null
if wait_for 3 "select status = 'delivered' and attempts = 5 from invoices.webhook_deliveries where id = $did"; then
  ok "redeliver of the dead letter succeeds once the receiver is fixed (attempt 5)"
else
  bad "redeliver" "$(q "select status, attempts, last_error from invoices.webhook_deliveries where id = $did")"
fi
flaky_ok=$(python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1]) if json.loads(l)['name']=='flaky']; print(len(rows), all(r['plain_ok'] and r['stamped_ok'] for r in rows), len({r['headers']['x-webhook-id'] for r in rows}))" "$log")
expect_eq "the retried delivery: 5 requests, all signed, one X-Webhook-Id" "$flaky_ok" "5 True 1"
finish
