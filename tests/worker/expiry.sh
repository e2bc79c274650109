#!/usr/bin/env bash
# The worker acts on deadlines within a second: an unpaid invoice expires when its quote's
# deadline passes (shortened here to 2 s), an open invoice past its due date turns overdue;
# requote_invoice gives the expired one a fresh quote. Each change is stamped and audited.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
[ -n "$(worker_pid)" ] && ok "the worker runs" || bad "the worker runs"
ids=$(psql_ -tA <<'SQL'
select invoices.act_as((invoices.create_merchant('Expiry test') ->> 'id')::uuid) is not null as acting \gset
-- crypto-denominated: quoted without a rate, deadline expiry_minutes (1) away
select invoices.create_invoice(currency => 'BTC', lines => '[{"description": "Node hosting", "unit_price": "0.005"}]',
                               expiry_minutes => 1, send => true) ->> 'id';
-- fiat without an asset, due yesterday
select invoices.create_invoice(lines => '[{"description": "Consulting", "unit_price": 100}]',
                               issue_date => current_date - 10, due_date => current_date - 1, send => true) ->> 'id';
select current_setting('invoices.merchant_id');
SQL
)
btc=$(sed -n 1p <<< "$ids"); late=$(sed -n 2p <<< "$ids"); mid=$(sed -n 3p <<< "$ids")
expect_eq "the BTC invoice is pending with a quote of 0.00500000 BTC" \
  "$(q "select status || ' ' || asset_amount from invoices.invoices where id = '$btc'")" "pending 0.00500000"

echo "overdue"
if wait_for 2 "select status = 'overdue' from invoices.invoices where id = '$late'"; then
  ok "an invoice due yesterday turns overdue within 2 s"
else
  bad "overdue" "$(q "select status from invoices.invoices where id = '$late'")"
fi
expect_eq "  stamped and audited" \
  "$(q "select (i.overdue_at is not null) || ' ' || a.actor || ' ' || a.event from invoices.invoices i join invoices.audit_log a on a.merchant_id = i.merchant_id and a.invoice_id = i.id and a.to_status = 'overdue' where i.id = '$late'")" \
  "true worker invoice.overdue"

echo "expiry"
# Shorten the deadline (the test's only shortcut): 2 s from now.
q "update invoices_internal.invoices set expires_at = clock_timestamp() + interval '2 seconds' where id = '$btc'" >/dev/null
if wait_for 5 "select status = 'expired' from invoices.invoices where id = '$btc'"; then
  ok "the unpaid invoice expired"
else
  bad "expired" "$(q "select status, expires_at, now() from invoices.invoices where id = '$btc'")"
fi
lag=$(q "select round(extract(epoch from expired_at - expires_at)::numeric, 3) from invoices.invoices where id = '$btc'")
awk -v l="$lag" 'BEGIN { exit !(l >= 0 && l < 1) }' && ok "  within one second of its deadline (${lag}s after)" || bad "  within one second" "$lag s"
expect_eq "  audited as invoice.expired by the worker" \
  "$(q "select actor || ' ' || event from invoices.audit_log where invoice_id = '$btc' and to_status = 'expired'")" "worker invoice.expired"

echo "requote"
out=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.requote_invoice('$btc') ->> 'status'")
expect_eq "requote_invoice puts it back to pending" "$(tail -1 <<< "$out")" "pending"
expect_eq "  with a second quote, the newest current" \
  "$(q "select count(*) || ' ' || (max(expires_at) > now() + interval '50 seconds') from invoices.quotes where invoice_id = '$btc'")" "2 true"
out=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" -c "select invoices.requote_invoice('$late')" 2>&1 || true)
case "$out" in *"only an expired invoice"*) ok "an overdue invoice cannot be requoted" ;; *) bad "requote refused" "$out" ;; esac
finish
