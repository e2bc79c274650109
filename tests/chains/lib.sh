# Helpers of the chain tests. Source after scripts/env.sh and tests/worker/lib.sh; they use
# $mid (the merchant) and $CHAIN (the chain's id).
# shellcheck shell=bash

# invoice ASSET AMOUNT CONFIRMATIONS -> "id address": a crypto-denominated invoice, finalized
invoice() {
  psql_ -tA -F ' ' -c "select invoices.act_as('$mid') is not null" -c "
    select r->>'id', r->>'address' from invoices.create_invoice(currency => '$1', asset => '$1',
      lines => '[{\"description\": \"Goods\", \"unit_price\": \"$2\"}]', confirmations => $3,
      pause_minutes => 10, send => true) r" | tail -1
}
status() { q "select status from invoices_internal.invoices where id = '$1'"; }
# expect_status NAME INVOICE STATUS [SECONDS]: waits for the status, says what it saw if not
expect_status() {
  if wait_for "${4:-15}" "select status = '$3' from invoices_internal.invoices where id = '$2'"; then ok "$1"; else
    bad "$1" "status $(status "$2"), payments: $(q "select string_agg(status || ' ' || amount, ', ') from invoices_internal.payments where invoice_id = '$2'"), chain error: $(q "select last_error from invoices.chains where id = '$CHAIN'")"
  fi
}
events() { q "select string_agg(event, ',' order by created_at) from invoices_internal.events where invoice_id = '$1'"; }
