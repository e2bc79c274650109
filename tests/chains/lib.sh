# Helpers of the chain tests. Source after tests/lib.sh; they use
# $mid (the merchant) and $CHAIN (the chain's id).
# shellcheck shell=bash

# invoice ASSET AMOUNT CONFIRMATIONS -> "id address": a crypto-denominated invoice, finalized
invoice() {
  psql_ -tA -F ' ' -c "select invoices.act_as('$mid') is not null" -c "
    select r->>'id', r->>'address' from invoices.create_invoice(currency => '$1', asset => '$1',
      lines => '[{\"description\": \"Goods\", \"unit_price\": \"$2\"}]', confirmations => $3,
      pause_minutes => 10, send => true) r" | tail -1
}
status() { q "select status from invoices.invoices where id = '$1'"; }
# expect_status NAME INVOICE STATUS [SECONDS]: waits for the status, says what it saw if not
expect_status() {
  if wait_for "${4:-15}" "select status = '$3' from invoices.invoices where id = '$2'"; then ok "$1"; else
    bad "$1" "status $(status "$2"), payments: $(q "select string_agg(status || ' ' || amount, ', ') from invoices.payments where invoice_id = '$2'"), chain error: $(q "select last_error from invoices.chains where id = '$CHAIN'")"
  fi
}
events() { q "select string_agg(event, ',' order by created_at) from invoices.events where invoice_id = '$1'"; }

# The account key the EVM tests derive deposit addresses from.
EVM_XPUB=xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt

# evm_merchant NAME -> merchant id: configures chain $CHAIN on $ETH_RPC (ETH, 1 confirmation,
# scanned from genesis, polled every 100 ms) and a merchant with an ETH wallet of an account key
# of its own (a fresh chain code on the test key).
evm_merchant() {
  psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'evm', '$ETH_RPC', '{ETH}', confirmations => 1, chain_id => 8453,
                                poll_interval_ms => 100, start_height => 0) is not null as c \gset
select invoices.act_as((invoices.create_merchant('$1') ->> 'id')::uuid) is not null as acting \gset
select invoices.create_wallet('ETH', xpub => '$(fresh_xpub "$EVM_XPUB")', gap_limit => 1000) is not null as w \gset
select current_setting('invoices.merchant_id');
SQL
}

# A JSON-RPC proxy in front of the node that can corrupt its answers (tests/stubs/rpc_proxy.py).
# start_proxy PORT UPSTREAM sets $proxy (its pid) and $PROXY_PORT.
start_proxy() {
  PROXY_PORT=$1
  python3 "$(dirname "${BASH_SOURCE[0]}")/../stubs/rpc_proxy.py" "$1" "$2" & proxy=$!
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$1/mode" >/dev/null 2>&1 && break; sleep 0.1; done
}
proxy_mode() { curl -fs "http://127.0.0.1:$PROXY_PORT/mode?set=$1" >/dev/null; }

# garbage_answers PAY: the proxy answers garbage, truncated JSON, wrong types and 502 in turn;
# each error must be recorded for the chain while the other tasks go on. PAY (a command) pays
# while the node answers garbage; then answers are good again.
garbage_answers() {
  local mode since
  for mode in garbage truncate wrong error; do
    proxy_mode "$mode"
    since=$(q "select now()")
    if wait_for 20 "select last_error_at > '$since' from invoices.chains where id = '$CHAIN'"; then
      ok "$mode: the error is recorded ($(q "select left(last_error, 60) from invoices.chains where id = '$CHAIN'"))"
    else
      bad "$mode: the error is recorded"
    fi
    [ "$mode" = garbage ] && "$@"
  done
  expect_eq "  worker_status shows the chain's failures" \
    "$(q "select consecutive_failures > 0 and last_error is not null from invoices.worker_status where task = 'chain $CHAIN'")" "t"
  expect_eq "  the other tasks go on" \
    "$(q "select last_run_at > now() - interval '3 seconds' from invoices.worker_status where task = 'expiry'")" "t"
  proxy_mode pass
}
