#!/usr/bin/env bash
# Sending invoices by e-mail through a real SMTP server (aiosmtpd on loopback, AUTH without TLS,
# allowed by invoices.smtp_allow_cleartext_auth): create_invoice with send => true and
# send_invoice queue the e-mail in the caller's transaction, the worker delivers it (hosted link
# in the text, the PDF attached, sent_at stamped), a relay that answers 451 or is down gets
# retries, one that refuses the recipient (550) dead-letters at once, and without a relay the
# queue waits. TLS (smtps, STARTTLS, certificates, the cleartext rule): email_tls.sh.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
bash "$here/install_tools.sh"
bash "$ROOT/tests/http/install_clients.sh" >/dev/null
work=$(mktemp -d); chmod 777 "$work"
SMTP_PORT=$((PGPORT + 1000 + RANDOM % 500))
relay_pid=""
start_relay() { "$LOCAL_DIR/venv/bin/python" "$ROOT/tests/stubs/smtp_relay.py" "$SMTP_PORT" "$work/mail" >"$work/relay.log" 2>&1 & relay_pid=$!
                for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && return; sleep 0.1; done; }
stop_relay() { if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; fi; relay_pid=""; }
cleanup() {
  stop_relay || true
  psql_ -qc "alter system reset invoices.smtp_url" -c "alter system reset invoices.smtp_from" \
        -c "alter system reset invoices.smtp_allow_cleartext_auth" \
        -c "alter system reset invoices.webhook_retry_schedule" -c "select pg_reload_conf()" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
API="$PGRST_URL"

read -r mid key read_key < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select invoices.act_as((invoices.create_merchant('Mailing Shop', 'owner@mailing.test') ->> 'id')::uuid) is not null as a \gset
select invoices.create_api_key('w', '{read,write}') ->> 'api_key' as k \gset
select current_setting('invoices.merchant_id'), :'k', invoices.create_api_key('r', '{read}') ->> 'api_key';
SQL
)
email_status() { q "select status from invoices.emails where merchant_id = '$mid' and id = $1"; }
post() { curl -s -o "$work/resp" -w '%{http_code}' -X POST "$API/rpc/$1" -H "X-API-Key: $2" -H 'Content-Type: application/json' -d "$3"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$work/resp"; }

# no relay yet: the e-mail is queued and waits
psql_ -qc "alter system reset invoices.smtp_url" -c "alter system set invoices.webhook_retry_schedule = '1s,1s'" -c "select pg_reload_conf()" >/dev/null
expect_eq "create_invoice with send => true and a customer e-mail (HTTP)" \
  "$(post create_invoice "$key" '{"lines": [{"description": "Consulting", "unit_price": "300"}], "currency": "USD", "customer_name": "Carol", "customer_email": "carol@example.com", "due_date": "2030-06-30", "send": true}')" "200"
inv_id=$(field id); number=$(field invoice_number); slug=$(field slug)
first=$(q "select id from invoices.emails where merchant_id = '$mid' and invoice_id = '$inv_id'")
[ -n "$first" ] && ok "  queued its e-mail in the same transaction" || bad "  queued its e-mail in the same transaction"
sleep 1.5
expect_eq "  without invoices.smtp_url it waits" "$(email_status "$first")" "queued"

# a relay: delivered with the link and the PDF, sent_at stamped (the relay is local and offers
# no STARTTLS: its password may go without TLS only because smtp_allow_cleartext_auth says so)
start_relay
psql_ -qc "alter system set invoices.smtp_url = 'smtp://mailer:s3cret@127.0.0.1:$SMTP_PORT'" \
      -c "alter system set invoices.smtp_allow_cleartext_auth = on" \
      -c "alter system set invoices.smtp_from = 'billing@mailing.test'" -c "select pg_reload_conf()" >/dev/null
wait_for 15 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $first" \
  && ok "the worker delivers it once a relay is configured" || bad "the worker delivers it once a relay is configured" "$(q "select status || ' ' || coalesce(last_error, '') from invoices.emails where id = $first")"
expect_eq "  sent_at stamped on the invoice" "$(q "select sent_at is not null from invoices.invoices where id = '$inv_id'")" "t"
expect_eq "  the relay's answer is kept" "$(q "select relay_response from invoices.emails where id = $first" | sed 's/queued as [0-9]*/queued as N/')" "2.0.0 queued as N"
# (invoices of other tests' merchants waiting in the queue go out through this relay too)
eml=$(grep -l "^X-Envelope-To: carol@example.com" "$work"/mail/*.eml | head -1)
"$LOCAL_DIR/venv/bin/python" - "$eml" "$work/att.pdf" > "$work/parsed" <<'PY'
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
body = m.get_body(preferencelist=("plain",)).get_content()
atts = list(m.iter_attachments())
open(sys.argv[2], "wb").write(atts[0].get_content() if atts else b"")
print(m["X-Envelope-From"], m["X-Envelope-To"], sep="\n")
print(m["From"].addresses[0].display_name, m["From"].addresses[0].addr_spec, m["To"], sep="\n")
print(m["Subject"])
print(len(atts), atts[0].get_content_type() if atts else "", atts[0].get_filename() if atts else "", sep="\n")
print(body)
PY
expect_eq "  envelope: from smtp_from to the customer" "$(sed -n 1,2p "$work/parsed" | tr '\n' ' ')" "billing@mailing.test carol@example.com "
expect_eq "  From shows the merchant, To the customer" "$(sed -n 3,5p "$work/parsed" | tr '\n' ' ')" "Mailing Shop billing@mailing.test carol@example.com "
expect_eq "  subject" "$(sed -n 6p "$work/parsed")" "Invoice $number from Mailing Shop - 300.00 USD"
expect_eq "  one attachment, the PDF" "$(sed -n 7,9p "$work/parsed" | tr '\n' ' ')" "1 application/pdf $number.pdf "
grep -qF "$PUBLIC_URL/i/$slug" "$work/parsed" && grep -q "Hello Carol" "$work/parsed" && grep -q "due on 2030-06-30" "$work/parsed" \
  && ok "  the text greets the customer and links the hosted page" || bad "  the text greets the customer and links the hosted page" "$(tail -n +10 "$work/parsed")"
expect_eq "  the attachment is the invoice's PDF" "$(pdftotext "$work/att.pdf" - 2>/dev/null | grep -c "$number")" "$(curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$number" | pdftotext - - | grep -c "$number")"

# send_invoice: a draft is finalized and sent, to another address on request
post create_invoice "$key" '{"lines": [{"description": "Draft work", "unit_price": "10"}], "currency": "USD", "customer_email": "dave@example.com"}' >/dev/null
draft=$(field invoice_number)
expect_eq "send_invoice(draft, to_email) over HTTP" "$(post send_invoice "$key" "{\"ref\": \"$draft\", \"to_email\": \"accounts@example.com\"}")" "200"
second=$(field id)
expect_eq "  the draft was finalized" "$(q "select status from invoices.invoices where merchant_id = '$mid' and invoice_number = '$draft'")" "pending"
wait_for 15 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $second" && ok "  delivered" || bad "  delivered"
expect_eq "  to the address asked for" "$(grep -l "^X-Envelope-To: accounts@example.com" "$work"/mail/*.eml | wc -l)" "1"
expect_eq "a read key may not send: 403" "$(post send_invoice "$read_key" "{\"ref\": \"$draft\"}")" "403"
post create_invoice "$key" '{"lines": [{"description": "No e-mail", "unit_price": "10"}], "currency": "USD", "send": true}' >/dev/null
nomail=$(field invoice_number)
expect_eq "no customer e-mail: 400" "$(post send_invoice "$key" "{\"ref\": \"$nomail\"}")" "400"
[ "$(python3 -c 'import json,sys; print(json.loads(json.load(open(sys.argv[1]))["details"])["errors"][0]["field"])' "$work/resp")" = customer_email ] && ok "  naming customer_email" || bad "  naming customer_email" "$(cat "$work/resp")"
expect_eq "  a bad to_email: 400" "$(post send_invoice "$key" "{\"ref\": \"$nomail\", \"to_email\": \"not-an-address\"}")" "400"
expect_eq "  and nothing queued for it" "$(q "select count(*) from invoices.emails where invoice_number = '$nomail' and merchant_id = '$mid'")" "0"

# 451: retried on the schedule, delivered once the relay takes it
echo tempfail > "$work/mail/mode"
post send_invoice "$key" "{\"ref\": \"$number\"}" >/dev/null; third=$(field id)
wait_for 15 "select status = 'failed' and last_error like '%451%' from invoices.emails where merchant_id = '$mid' and id = $third" \
  && ok "a relay answering 451: failed, kept for a retry" || bad "a relay answering 451: failed, kept for a retry" "$(q "select status || ' ' || coalesce(last_error, '') from invoices.emails where id = $third")"
echo ok > "$work/mail/mode"
wait_for 15 "select status = 'sent' and attempts >= 2 from invoices.emails where merchant_id = '$mid' and id = $third" \
  && ok "  then delivered by a retry" || bad "  then delivered by a retry" "$(email_status "$third")"

# 550 for the recipient: dead at once, no retries
echo reject > "$work/mail/mode"
post send_invoice "$key" "{\"ref\": \"$number\", \"to_email\": \"nobody@example.com\"}" >/dev/null; fourth=$(field id)
wait_for 15 "select status = 'dead' from invoices.emails where merchant_id = '$mid' and id = $fourth" \
  && ok "a recipient refused with 550: dead at once" || bad "a recipient refused with 550: dead at once" "$(q "select status || ' ' || coalesce(last_error, '') from invoices.emails where id = $fourth")"
expect_eq "  after one attempt" "$(q "select attempts from invoices.emails where id = $fourth")" "1"
echo ok > "$work/mail/mode"

# the relay down: failed with the connection error, delivered after it is back
stop_relay
post send_invoice "$key" "{\"ref\": \"$number\"}" >/dev/null; fifth=$(field id)
wait_for 15 "select status = 'failed' and last_error like '%connect%' from invoices.emails where merchant_id = '$mid' and id = $fifth" \
  && ok "the relay down: failed ($(q "select last_error from invoices.emails where id = $fifth" | cut -c1-60))" || bad "the relay down: failed" "$(q "select status || ' ' || coalesce(last_error, '') from invoices.emails where id = $fifth")"
start_relay
wait_for 20 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $fifth" \
  && ok "  delivered once it is back" || bad "  delivered once it is back" "$(email_status "$fifth")"
expect_eq "the emails view shows the merchant's e-mails only" \
  "$(curl -s "$API/emails?select=status&order=id" -H "X-API-Key: $read_key" | python3 -c 'import json,sys; print(",".join(r["status"] for r in json.load(sys.stdin)))')" "sent,sent,sent,dead,sent"
finish
