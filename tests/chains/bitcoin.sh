#!/usr/bin/env bash
# Payment detection on a real Bitcoin full node: bcoin 1.0.2 (npm) in regtest, spoken to through
# Bitcoin Core's JSON-RPC (Bitcoin Core itself is in neither Debian 12 nor the registries).
# The worker polls it through tests/stubs/rpc_proxy.py. Covers: a payment seen in the mempool
# then confirmed, partial then completion, overpayment, late payment after expiry, garbage
# answers, and a reorg (invalidateblock) that reverts a payment.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/lib.sh"
PORT="${BCOIN_TEST_PORT:-18643}"
WALLET_PORT=$((PORT + 1))
PROXY_PORT="${BTC_PROXY_PORT:-18646}"
CHAIN="bcoin-$(date +%s)"
work=$(mktemp -d)
chmod 777 "$work"
export BTC_RPC="http://127.0.0.1:$PORT" BTC_WALLET_RPC="http://127.0.0.1:$WALLET_PORT" BTC_PASS=pass
btc() { python3 "$here/btc_rpc.py" "$@"; }
start_bcoin() {
  BCOIN_NETWORK=regtest NODE_BACKEND=js NODE_OPTIONS="--require $ROOT/tests/chains/bitcoin/leveldown-fix.js" \
  setsid "$BCOIN_DIR/node_modules/.bin/bcoin" --network=regtest --prefix="$work/bcoin" \
    --http-host=127.0.0.1 --http-port="$PORT" --api-key=pass --index-tx=true --listen=false --workers=false \
    --log-level=warning --wallet-prefix="$work/bcoin/regtest" --wallet-witness=true \
    --wallet-http-host=127.0.0.1 --wallet-http-port="$WALLET_PORT" > "$work/bcoin.log" 2>&1 &
  bcoin=$!
  for _ in $(seq 200); do btc ready >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bcoin did not start: $(tail -5 "$work/bcoin.log")" >&2; exit 1
}
cleanup() {
  kill "${bcoin:-}" "${proxy:-}" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bcoin/regtest"
start_bcoin
btc mine 432   # bcoin's regtest turns segwit on at height 432
ok "bcoin regtest node up, 432 blocks mined (segwit active)"
start_proxy "$PROXY_PORT" "$BTC_RPC"

# the BIP84 test vector account key as a vpub (testnet/regtest version bytes), with a chain
# code of this run's own: a key belongs to one merchant
ZPUB=$(fresh_xpub vpub5YvMuJNjRSYon44z9QmCfdf8SqJRVNvz6m55Qy5iVjZQxDfUgtiQjnc7CC1fAbED2tAGCZRERUfvtn2DstZGU6HMns6dXXH2wujSc2wfi2x)
mid=$(psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'bitcoin', 'http://rpc:pass@127.0.0.1:$PROXY_PORT', '{BTC}',
  network => 'regtest', confirmations => 1, poll_interval_ms => 200) is not null;
select invoices.act_as((invoices.create_merchant('BTC payments') ->> 'id')::uuid) is not null;
select invoices.create_wallet('BTC', xpub => '$ZPUB', network => 'regtest') is not null;
select current_setting('invoices.merchant_id');
SQL
)
if wait_for 15 "select tip_height = 432 from invoices.chains where id = '$CHAIN'"; then
  ok "the worker follows the node (tip 432)"
else
  bad "the worker follows the node" "$(q "select tip_height, last_error from invoices.chains where id = '$CHAIN'")"
fi

echo "a payment in the mempool, then in a block"
read -r inv addr < <(invoice BTC 0.5 1)
case "$addr" in bcrt1q*) ok "deposit address $addr (BIP84 from a vpub, regtest)" ;; *) bad "bcrt1 deposit address" "$addr" ;; esac
btc send "$addr" 0.5 >/dev/null
expect_status "in the mempool: paid" "$inv" paid
expect_eq "  the payment: mempool, 0.5 BTC, 50000000 sat" \
  "$(q "select status || ' ' || amount || ' ' || amount_base from invoices.payments where invoice_id = '$inv'")" "mempool 0.5 50000000"
btc mine 1
expect_status "mined (1 confirmation required): confirmed" "$inv" confirmed
expect_eq "  events" "$(events "$inv")" "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.confirmed,invoice.confirmed"

echo "partial then completion"
read -r inv addr < <(invoice BTC 1 1)
btc send "$addr" 0.4 >/dev/null
expect_status "0.4 of 1 BTC: partial" "$inv" partial
btc send "$addr" 0.6 >/dev/null
expect_status "0.6 more: paid" "$inv" paid
btc mine 1
expect_status "mined: confirmed" "$inv" confirmed
expect_eq "  exact sum, no float on the way" "$(q "select asset_paid from invoices.invoices where id = '$inv'")" "1.0"

echo "overpayment and a late payment"
read -r over oaddr < <(invoice BTC 0.1 1)
read -r late laddr < <(invoice BTC 0.2 1)
q "update invoices_internal.invoices set expires_at = now() - interval '1 second' where id = '$late'" >/dev/null
expect_status "the second one expires" "$late" expired
btc send "$oaddr" 0.15 >/dev/null
btc send "$laddr" 0.2 >/dev/null
btc mine 1
expect_status "0.15 for 0.1: confirmed" "$over" confirmed
expect_eq "  overpaid" "$(q "select overpaid from invoices.invoices where id = '$over'")" "t"
expect_status "paid after its expiry: confirmed" "$late" confirmed
expect_eq "  paid_late" "$(q "select paid_late from invoices.invoices where id = '$late'")" "t"

echo "garbage answers"
read -r inv addr < <(invoice BTC 0.25 1)
pay_during_garbage() { btc send "$addr" 0.25 >/dev/null; btc mine 1; }
garbage_answers pay_during_garbage
expect_status "good answers again: the payment made meanwhile is found" "$inv" confirmed 40

echo "reorg"
read -r inv addr < <(invoice BTC 0.3 3)
btc send "$addr" 0.3 >/dev/null
btc mine 1
if wait_for 15 "select count(*) = 1 from invoices.payments where invoice_id = '$inv' and status = 'in_block'"; then
  ok "in a block (3 confirmations required): paid"
else
  bad "in a block" "$(status "$inv")"
fi
btc invalidate-tip
btc mine 2
expect_status "its block is replaced by a longer chain without it: back to pending" "$inv" pending
expect_eq "  the payment is reverted" "$(q "select status from invoices.payments where invoice_id = '$inv'")" "reverted"
expect_eq "  payment.reverted and invoice.reverted" "$(events "$inv" | cut -d, -f5-)" "payment.reverted,invoice.reverted"
finish
