#!/usr/bin/env bash
# Zero-confirmation payments on a real Bitcoin node (bcoin, regtest, its own): a transaction
# that signals BIP125 replaceability counts only once it is in a block (BTCPay's rule); a
# payment seen in the mempool that is then double-spent (the node restarted without it, the
# conflicting transaction mined) is reverted and its invoice goes back to pending.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/lib.sh"
PORT="${BCOIN_TRUST_PORT:-18653}"
WALLET_PORT=$((PORT + 1))
CHAIN="bcoin-trust-$(date +%s)"
work=$(mktemp -d); chmod 777 "$work"
export BTC_RPC="http://127.0.0.1:$PORT" BTC_WALLET_RPC="http://127.0.0.1:$WALLET_PORT" BTC_PASS=pass
btc() { python3 "$here/btc_rpc.py" "$@"; }
start_bcoin() {  # extra options: --no-wallet
  BCOIN_NETWORK=regtest NODE_BACKEND=js NODE_OPTIONS="--require $ROOT/tests/chains/bitcoin/leveldown-fix.js" \
  setsid "$BCOIN_DIR/node_modules/.bin/bcoin" --network=regtest --prefix="$work/bcoin" \
    --http-host=127.0.0.1 --http-port="$PORT" --api-key=pass --index-tx=true --listen=false --workers=false \
    --replace-by-fee=true --log-level=warning --wallet-prefix="$work/bcoin/regtest" --wallet-witness=true \
    --wallet-http-host=127.0.0.1 --wallet-http-port="$WALLET_PORT" "$@" >> "$work/bcoin.log" 2>&1 &
  bcoin=$!
  for _ in $(seq 200); do btc ready >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bcoin did not start: $(tail -5 "$work/bcoin.log")" >&2; exit 1
}
stop_bcoin() { kill "$bcoin" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$bcoin" 2>/dev/null || return 0; sleep 0.1; done; }
cleanup() {
  kill "${bcoin:-}" "${proxy:-}" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bcoin/regtest"
start_bcoin
btc mine 432
start_proxy "${BCOIN_TRUST_PROXY_PORT:-18656}" "$BTC_RPC"
ZPUB=$(fresh_xpub vpub5YvMuJNjRSYon44z9QmCfdf8SqJRVNvz6m55Qy5iVjZQxDfUgtiQjnc7CC1fAbED2tAGCZRERUfvtn2DstZGU6HMns6dXXH2wujSc2wfi2x)
mid=$(psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'bitcoin', 'http://rpc:pass@127.0.0.1:$PROXY_PORT', '{BTC}',
  network => 'regtest', confirmations => 1, poll_interval_ms => 200, mempool_grace_seconds => 1) is not null;
select invoices.act_as((invoices.create_merchant('BTC zero-conf') ->> 'id')::uuid) is not null;
select invoices.create_wallet('BTC', xpub => '$ZPUB', network => 'regtest') is not null;
select current_setting('invoices.merchant_id');
SQL
)
wait_for 15 "select tip_height = 432 from invoices.chains where id = '$CHAIN'" && ok "the worker follows the node" \
  || bad "the worker follows the node" "$(q "select tip_height, last_error from invoices.chains where id = '$CHAIN'")"
payments_of() { q "select coalesce(string_agg(status, ','), 'none') from invoices.payments where invoice_id = '$1'"; }

echo "a payment that signals BIP125 counts only once mined"
read -r inv addr < <(invoice BTC 0.1 1)
tx=$(btc rbf-pay "$addr" 0.1)
expect_eq "  the node holds it in its mempool" "$(btc in-mempool "$tx")" "yes"
sleep 2   # ten polls
expect_eq "  in the mempool: no payment, still pending" "$(payments_of "$inv") $(status "$inv")" "none pending"
btc mine 1
expect_status "  mined: confirmed (1 confirmation)" "$inv" confirmed
expect_eq "  the payment" "$(payments_of "$inv")" "confirmed"

echo "a mempool payment that is double-spent is reverted"
read -r inv addr < <(invoice BTC 0.2 1)
tx=$(btc send "$addr" 0.2)
expect_status "  seen in the mempool (no BIP125 signal): paid" "$inv" paid
conflict=$(btc double-spend "$tx" "$(btc new-address)")
miner=$(btc new-address)
# the node restarts without the wallet (which would broadcast the payment again) and with an
# empty mempool: the payment is gone from it
stop_bcoin; start_bcoin --no-wallet
expect_eq "  the restarted node does not have it" "$(btc in-mempool "$tx")" "no"
btc send-raw "$conflict" >/dev/null
btc mine-to "$miner" 1
expect_status "  double-spent: the invoice is pending again" "$inv" pending 20
expect_eq "  the payment is reverted" "$(payments_of "$inv")" "reverted"
expect_eq "  events" "$(events "$inv")" "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.reverted,invoice.reverted"
finish
