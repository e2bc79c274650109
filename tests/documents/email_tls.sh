#!/usr/bin/env bash
# Invoice e-mail over TLS, through real SMTP servers (aiosmtpd, 127.0.0.1 only) with a throwaway
# CA made by openssl: smtps:// (TLS from the first byte) and STARTTLS, both with AUTH, deliver,
# the password arriving inside TLS; a certificate the worker does not trust fails as temporary
# with the certificate error and goes out once invoices.smtp_ca_file names the CA; credentials
# with tls=none are a configuration error of the e-mail task (the queue waits), and credentials
# for a relay that offers no STARTTLS are refused naming invoices.smtp_allow_cleartext_auth,
# with nothing sent to it. Runs against the running stack (scripts/setup.sh), like email.sh:
#   bash tests/documents/email_tls.sh
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
bash "$ROOT/tests/http/install_clients.sh" >/dev/null   # the venv with aiosmtpd
command -v openssl >/dev/null || { sudo_ apt-get install -y -qq openssl >/dev/null; }
PY="$LOCAL_DIR/venv/bin/python"
work=$(mktemp -d); chmod 777 "$work"
base=$((PGPORT + 1600 + RANDOM % 300))
PLAIN_PORT=$base; SMTPS_PORT=$((base + 1)); STARTTLS_PORT=$((base + 2))
pids=()
# start_relay NAME PORT [smtps|starttls]: a relay storing into $work/NAME, up when this returns
start_relay() {
  local name=$1 port=$2 tls=${3:-}
  if [ -n "$tls" ]; then
    "$PY" "$ROOT/tests/stubs/smtp_relay.py" "$port" "$work/$name" "$tls" "$work/tls/server.pem" "$work/tls/server.key" >"$work/$name.log" 2>&1 &
  else
    "$PY" "$ROOT/tests/stubs/smtp_relay.py" "$port" "$work/$name" >"$work/$name.log" 2>&1 &
  fi
  pids+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done
  bad "relay $name did not start" "$(tail -5 "$work/$name.log")"
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  psql_ -qc "alter system reset invoices.smtp_url" -c "alter system reset invoices.smtp_from" \
        -c "alter system reset invoices.smtp_allow_cleartext_auth" -c "alter system reset invoices.smtp_ca_file" \
        -c "alter system reset invoices.webhook_retry_schedule" -c "select pg_reload_conf()" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
API="$PGRST_URL"

# a throwaway CA and a certificate for 127.0.0.1 it signed
mkdir -p "$work/tls"
(
  cd "$work/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj "/CN=invoices e-mail test CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
    -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
  chmod 644 ca.pem   # the worker (the cluster's OS user) reads it
)
openssl verify -CAfile "$work/tls/ca.pem" "$work/tls/server.pem" >/dev/null \
  && ok "a throwaway CA and a certificate for 127.0.0.1" || bad "a throwaway CA and a certificate for 127.0.0.1"
start_relay plain "$PLAIN_PORT"
start_relay smtps "$SMTPS_PORT" smtps
start_relay starttls "$STARTTLS_PORT" starttls

read -r mid key < <(psql_ -tA -F ' ' <<'SQL' | tail -1
select invoices.act_as((invoices.create_merchant('TLS Mailing Shop', 'owner@tls-mailing.test') ->> 'id')::uuid) is not null as a \gset
select current_setting('invoices.merchant_id'), invoices.create_api_key('w', '{read,write}') ->> 'api_key';
SQL
)
post() { curl -s -o "$work/resp" -w '%{http_code}' -X POST "$API/rpc/$1" -H "X-API-Key: $2" -H 'Content-Type: application/json' -d "$3"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$work/resp"; }
# send_to ADDRESS: a new invoice e-mailed to ADDRESS (create_invoice with send => true); prints the e-mail's id
send_to() {
  post create_invoice "$key" "{\"lines\": [{\"description\": \"Encrypted work\", \"unit_price\": \"120\"}], \"currency\": \"USD\", \"customer_name\": \"Carol\", \"customer_email\": \"$1\", \"due_date\": \"2030-06-30\", \"send\": true}" >/dev/null
  q "select id from invoices.emails where merchant_id = '$mid' and invoice_id = '$(field id)'" || true
}
email_row() { q "select status || ' ' || attempts || ' ' || coalesce(last_error, '') from invoices.emails where merchant_id = '$mid' and id = $1"; }
task_error() { q "select coalesce(last_error_kind, '') || ': ' || coalesce(last_error, '') from invoices.worker_status where task = 'email'"; }
# set_relay URL: points the worker at URL and waits until its e-mail task runs with it (the
# relay it reports is HOST:PORT)
set_relay() {
  psql_ -qc "alter system set invoices.smtp_url = '$1'" -c "select pg_reload_conf()" >/dev/null
  wait_for 40 "select last_result ->> 'relay' = '$2' from invoices.worker_status where task = 'email'" \
    || bad "the worker did not take up $2" "$(task_error)"
}
eml_for() { grep -l "^X-Envelope-To: $2" "$work/$1"/*.eml 2>/dev/null | head -1 || true; }

# retries every 2 s, 16 attempts: a temporary failure stays 'failed' long enough to be looked at
psql_ -qc "alter system reset invoices.smtp_allow_cleartext_auth" -c "alter system reset invoices.smtp_ca_file" \
      -c "alter system set invoices.webhook_retry_schedule = '2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s'" \
      -c "alter system set invoices.smtp_from = 'billing@tls-mailing.test'" -c "select pg_reload_conf()" >/dev/null

# 1. a user and password with tls=none: a configuration error naming the setting; the queue waits
t0=$(q "select now()")
psql_ -qc "alter system set invoices.smtp_url = 'smtp://mailer:s3cret@127.0.0.1:$PLAIN_PORT?tls=none'" -c "select pg_reload_conf()" >/dev/null
wait_for 40 "select last_error_kind = 'config' and last_error like '%invoices.smtp_allow_cleartext_auth%' and last_error_at >= '$t0' from invoices.worker_status where task = 'email'" \
  && ok "credentials with tls=none: a configuration error of the e-mail task naming invoices.smtp_allow_cleartext_auth" \
  || bad "credentials with tls=none: a configuration error of the e-mail task naming invoices.smtp_allow_cleartext_auth" "$(task_error)"
expect_eq "  the error does not show the password" "$(q "select last_error like '%s3cret%' from invoices.worker_status where task = 'email'")" "f"
held=$(send_to held@example.com)
sleep 2
expect_eq "  an e-mail queued meanwhile waits" "$(q "select status from invoices.emails where merchant_id = '$mid' and id = $held")" "queued"

# 2. smtps with a certificate the worker does not trust: temporary, the certificate error
set_relay "smtps://mailer:s3cret@127.0.0.1:$SMTPS_PORT" "127.0.0.1:$SMTPS_PORT"
untrusted=$(send_to untrusted@example.com)
wait_for 30 "select status = 'failed' and last_error like '%certificate%' from invoices.emails where merchant_id = '$mid' and id = $untrusted" \
  && ok "smtps, the relay's certificate not trusted: failed, kept for a retry ($(q "select last_error from invoices.emails where id = $untrusted" | cut -c1-90))" \
  || bad "smtps, the relay's certificate not trusted: failed, kept for a retry" "$(email_row "$untrusted")"
expect_eq "  no credentials reached the relay" "$(cat "$work/smtps/auth.log" 2>/dev/null | wc -l)" "0"

# 3. the CA in invoices.smtp_ca_file: delivered by a retry, the password inside TLS
psql_ -qc "alter system set invoices.smtp_ca_file = '$work/tls/ca.pem'" -c "select pg_reload_conf()" >/dev/null
wait_for 40 "select status = 'sent' and attempts >= 2 from invoices.emails where merchant_id = '$mid' and id = $untrusted" \
  && ok "smtps with credentials, the CA in invoices.smtp_ca_file: delivered by a retry" || bad "smtps with credentials, the CA in invoices.smtp_ca_file: delivered by a retry" "$(email_row "$untrusted")"
wait_for 30 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $held" \
  && ok "  the e-mail held back by the configuration error went out too" || bad "  the e-mail held back by the configuration error went out too" "$(email_row "$held")"
expect_eq "  AUTH arrived inside TLS, and only there" "$(sort -u "$work/smtps/auth.log" 2>/dev/null | tr '\n' ' ')" "mailer tls=yes ok=yes "
eml=$(eml_for smtps untrusted@example.com)
if [ -n "$eml" ]; then
  number=$(q "select invoice_number from invoices.emails where merchant_id = '$mid' and id = $untrusted")
  "$PY" - "$eml" > "$work/parsed" <<'PY'
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
atts = list(m.iter_attachments())
print(m["From"].addresses[0].display_name, m["From"].addresses[0].addr_spec, m["To"], sep="\n")
print(m["Subject"])
print(len(atts), atts[0].get_content_type() if atts else "", atts[0].get_filename() if atts else "", sep="\n")
print(m.get_body(preferencelist=("plain",)).get_content())
PY
  expect_eq "  From shows the merchant, To the customer" "$(sed -n 1,3p "$work/parsed" | tr '\n' ' ')" "TLS Mailing Shop billing@tls-mailing.test untrusted@example.com "
  expect_eq "  subject" "$(sed -n 4p "$work/parsed")" "Invoice $number from TLS Mailing Shop - 120.00 USD"
  expect_eq "  one attachment, the PDF" "$(sed -n 5,7p "$work/parsed" | tr '\n' ' ')" "1 application/pdf $number.pdf "
  grep -q "Hello Carol" "$work/parsed" && ok "  the text greets the customer" || bad "  the text greets the customer" "$(tail -n +8 "$work/parsed")"
else
  bad "  the message is in the relay's mailbox" "$(ls "$work/smtps")"
fi

# 4. STARTTLS (smtp:// with credentials: STARTTLS is required), the CA trusted
set_relay "smtp://mailer:s3cret@127.0.0.1:$STARTTLS_PORT" "127.0.0.1:$STARTTLS_PORT"
starttls=$(send_to starttls@example.com)
wait_for 30 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $starttls" \
  && ok "STARTTLS with credentials: delivered" || bad "STARTTLS with credentials: delivered" "$(email_row "$starttls")"
[ -n "$(eml_for starttls starttls@example.com)" ] && ok "  in the relay's mailbox" || bad "  in the relay's mailbox" "$(ls "$work/starttls")"
expect_eq "  AUTH arrived inside TLS, and only there" "$(sort -u "$work/starttls/auth.log" 2>/dev/null | tr '\n' ' ')" "mailer tls=yes ok=yes "
psql_ -qc "alter system set invoices.smtp_url = 'smtp://mailer:s3cret@127.0.0.1:$STARTTLS_PORT?tls=required'" -c "select pg_reload_conf()" >/dev/null
sleep 1
required=$(send_to required@example.com)
wait_for 30 "select status = 'sent' from invoices.emails where merchant_id = '$mid' and id = $required" \
  && ok "  and with ?tls=required" || bad "  and with ?tls=required" "$(email_row "$required")"

# 5. a relay without STARTTLS, credentials, the cleartext setting off: refused, nothing sent
set_relay "smtp://mailer:s3cret@127.0.0.1:$PLAIN_PORT" "127.0.0.1:$PLAIN_PORT"
plain=$(send_to plain@example.com)
wait_for 30 "select status = 'dead' and last_error like '%invoices.smtp_allow_cleartext_auth%' from invoices.emails where merchant_id = '$mid' and id = $plain" \
  && ok "plain SMTP with credentials: refused, naming invoices.smtp_allow_cleartext_auth" \
  || bad "plain SMTP with credentials: refused, naming invoices.smtp_allow_cleartext_auth" "$(email_row "$plain")"
expect_eq "  after one attempt" "$(q "select attempts from invoices.emails where merchant_id = '$mid' and id = $plain")" "1"
expect_eq "  nothing reached that relay: no AUTH, no message" \
  "$(cat "$work/plain/auth.log" 2>/dev/null | wc -l) $(find "$work/plain" -name '*.eml' | wc -l)" "0 0"
finish
