#!/usr/bin/env bash
# No payment credited that was not made, none credited to the wrong invoice: on a real Anvil
# (its own, chain id 8453), polled through tests/stubs/rpc_proxy.py. A mempool payment that is
# dropped, or replaced by a same-nonce transaction to another address, is reverted and its
# invoice goes back to pending; a transaction whose receipt has status 0 never credits; a chain
# credits only wallets of its own network; a node of another chain id is refused; a node one
# block behind is not a reorg; a payment is credited to the invoice that held the address when
# it was first seen, not to the address's next holder.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/lib.sh"
PORT="${ANVIL_TRUST_PORT:-18549}"
CHAIN="trust-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
evm() { python3 "$here/evm_rpc.py" "$@"; }
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --silent >/dev/null 2>&1 & anvil=$!
cleanup() {
  kill "${anvil:-}" "${proxy:-}" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id in ('$CHAIN', '$CHAIN-other')" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do evm height >/dev/null 2>&1 && break; sleep 0.05; done
start_proxy "${TRUST_PROXY_PORT:-18550}" "$ETH_RPC"
OTHER=0x000000000000000000000000000000000000dEaD
mid=$(psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'evm', 'http://127.0.0.1:$PROXY_PORT', '{ETH}', confirmations => 1,
  chain_id => 8453, poll_interval_ms => 100, start_height => 0, mempool_grace_seconds => 1) is not null;
select invoices.act_as((invoices.create_merchant('Trusted payments') ->> 'id')::uuid) is not null;
select invoices.create_wallet('ETH', xpub => '$(fresh_xpub "$EVM_XPUB")', gap_limit => 1000) is not null;
select current_setting('invoices.merchant_id');
SQL
)
wait_for 10 "select tip_height is not null from invoices.chains where id = '$CHAIN'" && ok "the worker polls the chain" \
  || bad "the worker polls the chain" "$(q "select last_error from invoices.chains where id = '$CHAIN'")"
scanned_past() { wait_for 15 "select cursor_height >= $1 from invoices.chains where id = '$CHAIN'"; }
payments_of() { q "select coalesce(string_agg(status, ','), 'none') from invoices.payments where invoice_id = '$1'"; }

echo "a mempool payment that is dropped is reverted (automine off, anvil_dropTransaction)"
evm automine off
read -r inv addr < <(invoice ETH 0.1 1)
tx=$(evm send-eth "$addr" 0.1)
expect_status "  seen in the mempool: paid (0-conf)" "$inv" paid
expect_eq "  the payment: mempool" "$(payments_of "$inv")" "mempool"
evm drop "$tx"
expect_status "  dropped: the invoice is pending again" "$inv" pending
expect_eq "  the payment is reverted" "$(payments_of "$inv")" "reverted"
expect_eq "  events" "$(events "$inv")" "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.reverted,invoice.reverted"
# (address_id, the invoice's hold on its address, is in no view)
expect_eq "  the invoice still holds its address" "$(q "select deposit_address = '$addr' and address_id is not null from invoices_internal.invoices where id = '$inv'")" "t"

echo "a mempool payment replaced by a same-nonce transaction to another address is reverted"
read -r inv addr < <(invoice ETH 0.1 1)
n=$(evm nonce)
evm send-eth-nonce "$addr" 0.1 "$n" 2 >/dev/null
expect_status "  seen in the mempool: paid" "$inv" paid
evm send-eth-nonce "$OTHER" 0.1 "$n" 50 >/dev/null
expect_status "  replaced: pending again" "$inv" pending
evm mine 1
h=$(evm height); scanned_past "$h"
expect_eq "  the replacement mined elsewhere: still pending, the payment reverted" "$(status "$inv") $(payments_of "$inv")" "pending reverted"
evm automine on

echo "a transaction whose receipt has status 0 never credits"
read -r inv addr < <(invoice ETH 0.1 1)
evm set-reverting-code "$addr"
tx=$(evm send-eth-gas "$addr" 0.1)
expect_eq "  the node mined it as failed" "$(evm receipt-status "$tx")" "0x0"
scanned_past "$(evm height)" || true
sleep 0.3
expect_eq "  no payment, still pending" "$(payments_of "$inv") $(status "$inv")" "none pending"

echo "a chain credits only wallets of its own network"
other=$(psql_ -tA <<SQL | tail -1
select invoices.act_as((invoices.create_merchant('Devnet wallet') ->> 'id')::uuid) is not null;
select invoices.create_wallet('ETH', xpub => '$(fresh_xpub "$EVM_XPUB")', network => 'devnet') is not null;
select current_setting('invoices.merchant_id');
SQL
)
read -r dinv daddr < <(mid=$other invoice ETH 0.1 1)
evm send-eth "$daddr" 0.1 >/dev/null
scanned_past "$(evm height)" || true
sleep 0.3
expect_eq "  a devnet wallet's address paid on the mainnet chain: not credited" "$(payments_of "$dinv") $(status "$dinv")" "none pending"

echo "a node of another chain is refused"
q "select invoices.configure_chain('$CHAIN-other', 'evm', 'http://127.0.0.1:$PORT', '{ETH}', chain_id => 1, poll_interval_ms => 100)" >/dev/null
wait_for 10 "select last_error like '%chain id 8453%configured as 1%' from invoices.chains where id = '$CHAIN-other'" \
  && ok "  chain_id 1 against Anvil's 8453: refused, with last_error" || bad "  refused" "$(q "select last_error from invoices.chains where id = '$CHAIN-other'")"
expect_eq "  and it never polled" "$(q "select coalesce(tip_height::text, 'no tip') from invoices.chains where id = '$CHAIN-other'")" "no tip"
q "update invoices_internal.chains set active = false where id = '$CHAIN-other'" >/dev/null

echo "a node one block behind is not a reorg"
read -r inv addr < <(invoice ETH 0.1 3)
evm send-eth "$addr" 0.1 >/dev/null
expect_status "  in a block: paid" "$inv" paid
since=$(q "select now()")
proxy_mode lag
sleep 1.5
expect_eq "  lagging node for 1.5 s: the payment stays in its block" "$(payments_of "$inv") $(status "$inv")" "in_block paid"
expect_eq "  and no payment.reverted" "$(q "select count(*) from invoices.events where invoice_id = '$inv' and event = 'payment.reverted'")" "0"
proxy_mode pass
evm mine 2
expect_status "  caught up, 3 confirmations: confirmed" "$inv" confirmed

echo "a payment is credited to the invoice that held the address when it was first seen"
read -r first addr < <(invoice ETH 0.1 1)
q "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null
# the worker reads the chains every second; a poll may still be under way: wait until none came
# for a second and a half
wait_for 10 "select last_poll_at < now() - interval '1.5 seconds' from invoices.chains where id = '$CHAIN'" || true
tx=$(evm send-eth "$addr" 0.1)   # mined now, while the worker does not look
# Anvil's block clock runs ahead of the wall clock when blocks come fast: the address changes
# hands only after the block's time, as it would on a real chain
mined_at=$(evm tx-time "$tx")
while [ "$(date +%s)" -le "$mined_at" ]; do sleep 0.2; done
q "select invoices.act_as('$mid'); select invoices.cancel_invoice('$first')" >/dev/null
# the operator shortens the address's pause: it goes to the next invoice at once
q "update invoices_internal.addresses set available_at = now() where merchant_id = '$mid' and address = '$addr'" >/dev/null
read -r second addr2 < <(invoice ETH 0.1 1)
expect_eq "  the next invoice got the same address" "$addr2" "$addr"
q "update invoices_internal.chains set active = true where id = '$CHAIN'" >/dev/null
scanned_past "$(evm height)" || true
sleep 0.5
expect_eq "  the payment (mined while the first held it) is the first invoice's, late" \
  "$(q "select count(*) || ' ' || bool_and(late) from invoices.payments where invoice_id = '$first'")" "1 true"
expect_eq "  the next holder got nothing and is still pending" "$(payments_of "$second") $(status "$second")" "none pending"
finish
