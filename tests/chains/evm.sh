#!/usr/bin/env bash
# Payment detection on a real Anvil node (chain id 8453, like Base): native ETH and a 6-decimals
# ERC-20 (TestUSDC, deployed from tests/chains/evm/TestUSDC.bin). The worker polls the node
# through tests/stubs/rpc_proxy.py, which can corrupt answers. Covers: exact payment,
# confirmations counting, partial then completion, overpayment, late payment after expiry,
# garbage RPC answers, a reorg that reverts a payment, and a node restart mid-stream.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/lib.sh"
PORT="${ANVIL_TEST_PORT:-18545}"
PROXY_PORT="${RPC_PROXY_PORT:-18546}"
CHAIN="anvil-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
evm() { python3 "$here/evm_rpc.py" "$@"; }
start_anvil() {
  "$ANVIL_BIN" --port "$PORT" --chain-id 8453 --silent --state "$work/anvil.json" >/dev/null 2>&1 &
  anvil=$!
  for _ in $(seq 100); do evm height >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "anvil did not start" >&2; exit 1
}
cleanup() {
  kill "${anvil:-}" "${proxy:-}" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
start_anvil
start_proxy "$PROXY_PORT" "$ETH_RPC"
usdc=$(evm deploy-usdc)
ok "TestUSDC deployed at $usdc"

xpub=$(fresh_xpub "$EVM_XPUB")
mid=$(psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'evm', 'http://127.0.0.1:$PROXY_PORT', '{ETH,USDC}', confirmations => 2,
  chain_id => 8453, tokens => '{"USDC": {"contract": "$usdc", "decimals": 6}}', poll_interval_ms => 100) is not null;
select invoices.act_as((invoices.create_merchant('EVM payments') ->> 'id')::uuid) is not null;
-- one account key of this run's own for both assets (a key belongs to one merchant)
select invoices.create_wallet('ETH', xpub => '$xpub') is not null;
select invoices.create_wallet('USDC', xpub => '$xpub') is not null;
select current_setting('invoices.merchant_id');
SQL
)
if wait_for 10 "select tip_height is not null from invoices.chains where id = '$CHAIN'"; then
  ok "the worker polls the chain (configured by SQL, no restart)"
else
  bad "the worker polls the chain" "$(q "select last_error from invoices.chains where id = '$CHAIN'")"
fi

echo "exact payment in ETH, 2 confirmations"
read -r inv addr < <(invoice ETH 0.5 2)
evm send-eth "$addr" 0.5 >/dev/null
expect_status "in a block (1 confirmation): paid" "$inv" paid
expect_eq "  the payment: in_block, 0.5 ETH, 1 confirmation" \
  "$(q "select status || ' ' || amount || ' ' || confirmations from invoices.payments where invoice_id = '$inv'")" "in_block 0.5 1"
evm mine 1
expect_status "one more block: confirmed" "$inv" confirmed
expect_eq "  events in order" "$(events "$inv")" \
  "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.confirmed,invoice.confirmed"
expect_eq "  amount_paid and asset_paid" "$(q "select amount_paid || ' ' || asset_paid || ' ' || overpaid from invoices.invoices where id = '$inv'")" \
  "0.500000000000000000 0.5 false"
expect_eq "  the audit log has every step" \
  "$(q "select string_agg(coalesce(from_status, '-') || '>' || to_status, ' ' order by id) from invoices.audit_log where invoice_id = '$inv'")" \
  "->draft draft>pending pending>paid paid>confirmed"

echo "confirmations counting (3 required)"
read -r inv addr < <(invoice ETH 0.2 3)
evm send-eth "$addr" 0.2 >/dev/null
expect_status "1 of 3: paid" "$inv" paid
evm mine 1; sleep 0.5
expect_eq "  2 of 3: still paid" "$(status "$inv") $(q "select confirmations from invoices.payments where invoice_id = '$inv'")" "paid 2"
evm mine 1
expect_status "  3 of 3: confirmed" "$inv" confirmed

echo "partial then completion in USDC (ERC-20 Transfer logs)"
read -r inv addr < <(invoice USDC 25 1)
evm send-usdc "$usdc" "$addr" 10000000 >/dev/null
expect_status "10 of 25 USDC: partial" "$inv" partial
expect_eq "  amount_due" "$(q "select amount_due from invoices.invoices where id = '$inv'")" "15.000000"
evm send-usdc "$usdc" "$addr" 15000000 >/dev/null
expect_status "15 more: confirmed (1 confirmation required)" "$inv" confirmed
expect_eq "  two payments, 25 USDC" "$(q "select count(*) || ' ' || sum(amount) from invoices.payments where invoice_id = '$inv'")" "2 25"

echo "overpayment"
read -r inv addr < <(invoice ETH 0.1 1)
evm send-eth "$addr" 0.15 >/dev/null
expect_status "0.15 for 0.1: confirmed" "$inv" confirmed
expect_eq "  overpaid flag" "$(q "select overpaid from invoices.invoices where id = '$inv'")" "t"

echo "late payment after expiry"
read -r inv addr < <(invoice ETH 0.3 1)
q "update invoices_internal.invoices set expires_at = now() - interval '1 second' where id = '$inv'" >/dev/null
expect_status "the quote deadline passes: expired (address released, watched during its pause)" "$inv" expired
evm send-eth "$addr" 0.3 >/dev/null
expect_status "paid after expiry: confirmed, never lost" "$inv" confirmed
expect_eq "  paid_late, and the payment is late" \
  "$(q "select i.paid_late || ' ' || p.late from invoices.invoices i join invoices.payments p on p.merchant_id = i.merchant_id and p.invoice_id = i.id where i.id = '$inv'")" "true true"

echo "garbage answers from the node"
read -r inv addr < <(invoice ETH 0.25 1)
pay_during_garbage() { evm send-eth "$addr" 0.25 >/dev/null; }
garbage_answers pay_during_garbage
expect_status "answers good again: the payment made meanwhile is found" "$inv" confirmed 40

echo "reorg"
read -r inv addr < <(invoice ETH 0.4 5)
evm send-eth "$addr" 0.4 >/dev/null
expect_status "paid (in a block, 5 confirmations required)" "$inv" paid
evm mine 1; sleep 0.5
evm reorg 2
expect_status "the block is replaced: the invoice goes back to pending" "$inv" pending
expect_eq "  the payment is reverted" "$(q "select status from invoices.payments where invoice_id = '$inv'")" "reverted"
expect_eq "  events" "$(events "$inv")" "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.reverted,invoice.reverted"
expect_eq "  nothing else was reverted" "$(q "select count(*) from invoices.payments where merchant_id = '$mid' and status = 'reverted'")" "1"
echo "node restart mid-stream"
read -r inv addr < <(invoice ETH 0.35 1)
tx=$(evm send-eth "$addr" 0.35)
kill "$anvil"; wait "$anvil" 2>/dev/null || true
since=$(q "select now()")
wait_for 10 "select last_error_at > '$since' from invoices.chains where id = '$CHAIN'" && ok "node down: recorded" || bad "node down: recorded"
start_anvil
expect_status "node back (same chain): the payment is there" "$inv" confirmed 40

echo "changed by SQL, no restart"
q "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null
sleep 2
polled=$(q "select last_poll_at from invoices.chains where id = '$CHAIN'"); sleep 1.5
expect_eq "a deactivated chain is no longer polled" "$(q "select last_poll_at from invoices.chains where id = '$CHAIN'")" "$polled"
q "update invoices_internal.chains set active = true where id = '$CHAIN'" >/dev/null
if wait_for 5 "select last_poll_at > '$polled' from invoices.chains where id = '$CHAIN'"; then ok "reactivated: polled again"; else bad "reactivated: polled again"; fi
finish
