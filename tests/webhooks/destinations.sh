#!/usr/bin/env bash
# Outbound requests go to public addresses only (no SSRF). Registration refuses loopback,
# private, link-local, CGNAT and names such as localhost, naming the field; the worker checks
# again every address a host resolves to before it connects (with
# invoices.allow_private_destinations off, a URL that got in anyway is refused without a
# packet); no redirect is followed; a deleted or deactivated endpoint's queued deliveries stop
# at once. Every address used here is on loopback: refusals happen before any connection.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
PORT="${DESTINATIONS_RECEIVER_PORT:-18910}"
work=$(mktemp -d); log="$work/requests"; touch "$log"
python3 - "$PORT" "$log" <<'PY' &
import http.server, sys
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        open(log, "a").write(self.path + "\n")
        if self.path.startswith("/redirect"):
            self.send_response(302); self.send_header("Location", f"http://127.0.0.1:{port}/landed"); self.end_headers()
        elif self.path.startswith("/fail"):
            self.send_response(500); self.end_headers()
        else:
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    do_GET = do_POST
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
receiver=$!
restore() {
  kill $receiver 2>/dev/null || true
  psql_ -qc "alter database \"$PGDATABASE\" set invoices.allow_private_destinations = on" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap restore EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT/probe" >/dev/null 2>&1 && break; sleep 0.1; done
: > "$log"
R="http://127.0.0.1:$PORT"
mid=$(q "select invoices.create_merchant('Destinations $(date +%s%N)') ->> 'id'")

echo "registration refuses non-public destinations (setting off for this session only)"
refused=0; written=0
for u in http://127.0.0.1/ http://localhost:8080/x http://LOCALHOST./ http://2130706433/ http://0x7f.1/ \
         http://0.0.0.0/ http://10.0.0.1/ http://172.16.5.4/ http://192.168.0.1/ http://169.254.169.254/latest/meta-data/ \
         http://100.64.0.1/ 'http://[::1]/' 'http://[::ffff:169.254.169.254]/' 'http://[fd00::1]/' http://metadata.google.internal/ \
         http://db/; do
  refusal() { { psql_ -tA -c "set invoices.allow_private_destinations = off" -c "select invoices.act_as('$mid') is not null" -c "$1" 2>&1 || true; } \
                | grep -o '"field": *"[a-z_]*"' | tr -d ' ' || true; }
  field="$(refusal "select invoices.create_webhook_endpoint('$u')") $(refusal "select invoices.create_invoice(lines => '[{\"description\": \"x\", \"unit_price\": 1}]', callback_url => '$u')")"
  [ "$field" = '"field":"url" "field":"callback_url"' ] && refused=$((refused + 1)) || bad "  $u" "$field"
done
expect_eq "  16 URLs refused as endpoint (url) and as callback (callback_url), 22023 naming the field" "$refused" "16"
expect_eq "  and nothing was written" "$(q "select count(*) from invoices.webhook_endpoints where merchant_id = '$mid'") $(q "select count(*) from invoices.invoices where merchant_id = '$mid'")" "0 0"
# (rolled back: the worker of this database must never see it, as it would look the name up)
expect_eq "  a public name that does not resolve yet is accepted" \
  "$(psql_ -tA -c "begin" -c "set local invoices.allow_private_destinations = off" -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_webhook_endpoint('https://hooks.not-registered-yet.example/x', '{invoice.viewed}') ->> 'url'" -c "rollback" | grep "^https" || true)" \
  "https://hooks.not-registered-yet.example/x"

echo "the worker refuses a private destination that got in anyway, before connecting"
psql_ -qc "alter database \"$PGDATABASE\" set invoices.allow_private_destinations = off" >/dev/null
# written past the registration check, as an older install or a DNS change would leave it
q "insert into invoices_internal.webhook_endpoints (merchant_id, url, events, secret)
   values ('$mid', '$R/ok/sneaked', '{invoice.created}', 'whsec_x'), ('$mid', 'http://localhost:$PORT/ok/named', '{invoice.created}', 'whsec_y')" >/dev/null
inv=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_invoice(lines => '[{\"description\": \"x\", \"unit_price\": 1}]') ->> 'id'" | tail -1)
wait_for 20 "select count(*) = 2 from invoices.webhook_deliveries d join invoices.events e on e.merchant_id = d.merchant_id and e.id = d.event_id cross join jsonb_array_elements(d.attempt_log) as a(attempt) where e.invoice_id = '$inv'" || true
expect_eq "  both attempts failed as refused" \
  "$(q "select string_agg(case when a.attempt ->> 'error' like '%refused: % resolves to 127.0.0.1, loopback%' then 'refused' else coalesce(a.attempt ->> 'error', a.attempt ->> 'status_code') end, ' ' order by d.url) from invoices.webhook_deliveries d join invoices.events e on e.merchant_id = d.merchant_id and e.id = d.event_id cross join jsonb_array_elements(d.attempt_log) as a(attempt) where e.invoice_id = '$inv'")" \
  "refused refused"
expect_eq "  and the receiver got nothing" "$(grep -c ok "$log" || true)" "0"
psql_ -qc "alter database \"$PGDATABASE\" set invoices.allow_private_destinations = on" >/dev/null
q "update invoices_internal.webhook_endpoints set active = false where merchant_id = '$mid'" >/dev/null

echo "no redirect is followed"
psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_webhook_endpoint('$R/redirect', '{invoice.created}')" >/dev/null
inv=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_invoice(lines => '[{\"description\": \"x\", \"unit_price\": 1}]') ->> 'id'" | tail -1)
wait_for 20 "select exists (select 1 from invoices.webhook_deliveries d join invoices.events e on e.merchant_id = d.merchant_id and e.id = d.event_id cross join jsonb_array_elements(d.attempt_log) as a(attempt) where e.invoice_id = '$inv')" || true
expect_eq "  the 302 is a failed attempt, logged" \
  "$(q "select d.status || ' ' || (a.attempt ->> 'status_code') || ' ' || (a.attempt ->> 'error') from invoices.webhook_deliveries d join invoices.events e on e.merchant_id = d.merchant_id and e.id = d.event_id cross join jsonb_array_elements(d.attempt_log) as a(attempt) where e.invoice_id = '$inv'")" \
  "pending 302 redirect (302) to \"http://127.0.0.1:$PORT/landed\" not followed"
sleep 0.5
expect_eq "  and its target got nothing" "$(grep -c landed "$log" || true)" "0"

echo "a deleted or deactivated endpoint's queued deliveries stop at once"
ep=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_webhook_endpoint('$R/fail/deleted', '{invoice.created}') ->> 'id'" | tail -1)
inv=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_invoice(lines => '[{\"description\": \"x\", \"unit_price\": 1}]') ->> 'id'" | tail -1)
wait_for 20 "select attempts = 1 and status = 'pending' from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep'" \
  && ok "  a failing endpoint's delivery waits for its retry" || bad "  a failing endpoint's delivery waits for its retry"
psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.delete_webhook_endpoint('$ep')" >/dev/null
expect_eq "  delete_webhook_endpoint: the queued delivery is dead at once" \
  "$(q "select status || ' / ' || last_error from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep'")" \
  "dead / not sent: the endpoint was deleted"
did=$(q "select id from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep'")
expect_eq "  and redeliver refuses it" \
  "$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.redeliver($did)" 2>&1 | grep -o 'its endpoint was deleted' | head -1 || true)" "its endpoint was deleted"
ep2=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_webhook_endpoint('$R/fail/deactivated', '{invoice.created}') ->> 'id'" | tail -1)
inv=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.create_invoice(lines => '[{\"description\": \"x\", \"unit_price\": 1}]') ->> 'id'" | tail -1)
wait_for 20 "select attempts = 1 from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep2'" || true
before=$(grep -c deactivated "$log" || true)
q "update invoices_internal.webhook_endpoints set active = false where merchant_id = '$mid' and id = '$ep2';
   update invoices_internal.webhook_deliveries set next_attempt_at = now() where merchant_id = '$mid' and endpoint_id = '$ep2'" >/dev/null
wait_for 20 "select status = 'dead' from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep2'" || true
expect_eq "  deactivated by any means: the worker ends its due delivery without sending" \
  "$(q "select status || ' / ' || attempts || ' / ' || last_error from invoices.webhook_deliveries where merchant_id = '$mid' and endpoint_id = '$ep2'") / $(( $(grep -c deactivated "$log" || true) - before ))" \
  "dead / 1 / not sent: the endpoint was deleted or deactivated / 0"
finish
