#!/usr/bin/env bash
# Payment detection on a real Kaspa node: kaspad 2.1.0 (rusty-kaspa, built from crates.io) on
# simnet with --utxoindex, spoken to over wRPC JSON (WebSocket). Blocks come from
# getBlockTemplate / submitBlock (simnet needs no proof of work), payments are signed with the
# Kaspa SDK from PyPI (tests/chains/kaspa/pay.py). Covers: a payment seen in the mempool, then
# accepted by a chain block, then confirmed; confirmations counting; partial then completion;
# overpayment; late payment after expiry; a node that is not kaspad (handshake refused) and a
# stopped node, with the payment made meanwhile found after recovery; and a reorg by a second
# node whose heavier chain double-spends the payment: reverted, the invoice back to pending; a
# mempool payment the node loses (restarted) whose coin is then spent elsewhere: reverted.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/lib.sh"
bash "$here/install_kaspad.sh"
PY="$LOCAL_DIR/venv/bin/python"
WS1="${KASPA_TEST_PORT:-18610}"; P2P1=$((WS1 + 1)); WS2=$((WS1 + 10)); P2P2=$((WS1 + 11))
URL1="ws://127.0.0.1:$WS1"; URL2="ws://127.0.0.1:$WS2"
CHAIN="kaspa-$(date +%s)"
work=$(mktemp -d); chmod 777 "$work"
# start_node N [connect]: kaspad simnet number N (1 or 2), data kept in $work/nodeN
start_node() {
  local n=$1 ws p2p extra=""
  if [ "$n" = 1 ]; then ws=$WS1; p2p=$P2P1; else ws=$WS2; p2p=$P2P2; fi
  [ "${2:-}" = connect ] && extra="--connect=127.0.0.1:$P2P1"
  mkdir -p "$work/node$n"; [ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$work/node$n"
  as_owner "$KASPAD_BIN" --simnet --utxoindex --rpclisten-json="127.0.0.1:$ws" --nogrpc --listen="127.0.0.1:$p2p" \
    --nodnsseed --disable-upnp --outpeers=0 --enable-unsynced-mining --appdir "$work/node$n" --nologfiles --yes \
    $extra >>"$work/node$n.log" 2>&1 &
  for _ in $(seq 300); do kas "$ws" info >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "kaspad $n did not start: $(tail -3 "$work/node$n.log")" >&2; exit 1
}
stop_node() { pkill -f -- "--appdir $work/node$1" 2>/dev/null || true; for _ in $(seq 100); do pgrep -f -- "--appdir $work/node$1" >/dev/null || return 0; sleep 0.1; done; }
kas() { local port=$1; shift; "$PY" "$here/kaspa/node.py" "ws://127.0.0.1:$port" "$@"; }
# pay ADDRESS KAS [NODE_URL] [BLOCKS] [PRIVATE_KEY]: signs with the SDK, submits, mines BLOCKS
pay() { "$PY" "$here/kaspa/pay.py" "$1" "$2" --url "${3:-$URL1}" --blocks "${4:-1}" ${5:+--key "$5"} 2>>"$work/pay.log" | sed -n 's/^txid: //p'; }
# same_sink: waits until both nodes agree on the chain (nudging node 2 once)
same_sink() {
  for i in $(seq 150); do
    [ "$(kas "$WS1" sink)" = "$(kas "$WS2" sink)" ] && return 0
    [ "$i" = 40 ] && mine 1 "$WS2"
    sleep 0.1
  done
  echo "the nodes did not agree on a chain" >&2; return 1
}
mine() { kas "${2:-$WS1}" mine "$1" >/dev/null; }
cleanup() {
  stop_node 2; stop_node 1
  psql_ -qc "update invoices_internal.chains set active = false where id = '$CHAIN'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
start_node 1
ok "kaspad $KASPAD_VERSION on simnet ($(kas "$WS1" info))"

# the merchant's watch-only KAS wallet: a testnet-version extended public key (simnet
# addresses), with a chain code of this run's own: a key belongs to one merchant
KAS_XPUB=$(fresh_xpub tpubDDaRj4Gb7q8V1P8hETLKbMRQyWRAkL1Sph3mQdTFgJHQefHqXajb6sXWyvKfEQo46xJYKA29vMhEUsBgf7QpEYL17aJwAQ7NDb8koR13eMV)
mid=$(psql_ -tA <<SQL | tail -1
select invoices.configure_chain('$CHAIN', 'kaspa', '$URL1', '{KAS}', confirmations => 2, poll_interval_ms => 100,
                                network => 'simnet', start_height => 0) is not null;
select invoices.act_as((invoices.create_merchant('Kaspa payments') ->> 'id')::uuid) is not null;
select invoices.create_wallet('KAS', xpub => '$KAS_XPUB', network => 'simnet', gap_limit => 1000) is not null;
select current_setting('invoices.merchant_id');
SQL
)
if wait_for 15 "select tip_height is not null and last_error is null from invoices.chains where id = '$CHAIN'"; then
  ok "the worker follows the node's selected chain (tip at blue score $(q "select tip_height from invoices.chains where id = '$CHAIN'"))"
else
  bad "the worker follows the node" "$(q "select last_error from invoices.chains where id = '$CHAIN'")"
fi

echo "exact payment: mempool, accepted, confirmed (2 confirmations)"
read -r inv addr < <(invoice KAS 1.5 2)
[[ "$addr" == kaspasim:* ]] && ok "  deposit address $addr" || bad "  deposit address" "$addr"
pay "$addr" 1.5 "$URL1" 0 > "$work/txid"
txid=$(cat "$work/txid")
if wait_for 10 "select count(*) = 1 from invoices.payments where invoice_id = '$inv' and status = 'mempool'"; then
  ok "  seen in the mempool"
else
  bad "  seen in the mempool" "$(q "select string_agg(status, ',') from invoices.payments where invoice_id = '$inv'")"
fi
expect_eq "  the payment's txid" "$(q "select txid from invoices.payments where invoice_id = '$inv'")" "$txid"
mine 2   # a block with the transaction, and a chain block that accepts it
expect_status "accepted by a chain block: paid" "$inv" paid
mine 1
expect_status "one more block: confirmed" "$inv" confirmed
expect_eq "  the payment: confirmed, 1.5 KAS" "$(q "select status || ' ' || amount || ' ' || amount_base from invoices.payments where invoice_id = '$inv'")" \
  "confirmed 1.5 150000000"
expect_eq "  events in order" "$(events "$inv")" \
  "invoice.created,invoice.finalized,payment.received,invoice.paid,payment.confirmed,invoice.confirmed"

echo "confirmations counting (3 required)"
read -r inv addr < <(invoice KAS 0.75 3)
pay "$addr" 0.75 >/dev/null; mine 1
expect_status "1 of 3: paid" "$inv" paid
mine 1; sleep 0.5
expect_eq "  2 of 3: still paid" "$(status "$inv") $(q "select confirmations from invoices.payments where invoice_id = '$inv'")" "paid 2"
mine 1
expect_status "  3 of 3: confirmed" "$inv" confirmed

echo "partial, then completion"
read -r inv addr < <(invoice KAS 2 1)
pay "$addr" 0.5 >/dev/null; mine 1
expect_status "0.5 of 2 KAS: partial" "$inv" partial
pay "$addr" 1.5 >/dev/null; mine 1
expect_status "1.5 more: confirmed" "$inv" confirmed
expect_eq "  two payments, 2 KAS" "$(q "select count(*) || ' ' || sum(amount) from invoices.payments where invoice_id = '$inv'")" "2 2.0"

echo "overpayment"
read -r inv addr < <(invoice KAS 1 1)
pay "$addr" 1.25 >/dev/null; mine 1
expect_status "1.25 for 1 KAS: confirmed" "$inv" confirmed
expect_eq "  overpaid" "$(q "select overpaid || ' ' || asset_paid from invoices.invoices where id = '$inv'")" "true 1.25"

echo "late payment after expiry"
read -r inv addr < <(invoice KAS 0.6 1)
q "update invoices_internal.invoices set expires_at = now() - interval '1 second' where id = '$inv'" >/dev/null
expect_status "the deadline passes: expired" "$inv" expired
pay "$addr" 0.6 >/dev/null; mine 1
wait_for 15 "select paid_late from invoices.invoices where id = '$inv'" && ok "  paid during the pause window: paid_late" \
  || bad "  paid during the pause window: paid_late" "$(status "$inv")"

echo "a node that is not kaspad, and a stopped node"
q "select invoices.configure_chain('$CHAIN', 'kaspa', 'ws://127.0.0.1:$PGRST_PORT', '{KAS}', confirmations => 1, poll_interval_ms => 100, network => 'simnet')" >/dev/null
wait_for 10 "select last_error like '%WebSocket%' from invoices.chains where id = '$CHAIN'" \
  && ok "  an HTTP server instead: $(q "select left(last_error, 70) from invoices.chains where id = '$CHAIN'")" \
  || bad "  an HTTP server instead" "$(q "select last_error from invoices.chains where id = '$CHAIN'")"
read -r inv addr < <(invoice KAS 0.9 1)
pay "$addr" 0.9 >/dev/null; mine 1
q "select invoices.configure_chain('$CHAIN', 'kaspa', '$URL1', '{KAS}', confirmations => 1, poll_interval_ms => 100, network => 'simnet')" >/dev/null
expect_status "  pointed back at kaspad: the payment made meanwhile is found" "$inv" confirmed
expect_eq "  worker_status has the chain's task" "$(q "select count(*) from invoices.worker_status where task = 'chain $CHAIN'")" "1"
read -r inv addr < <(invoice KAS 0.8 1)
stop_node 1
wait_for 10 "select last_error is not null from invoices.chains where id = '$CHAIN'" \
  && ok "  kaspad stopped: $(q "select left(last_error, 60) from invoices.chains where id = '$CHAIN'")" || bad "  kaspad stopped: error recorded"
start_node 1
pay "$addr" 0.8 >/dev/null; mine 1
expect_status "  restarted with its data: the payment is found" "$inv" confirmed

echo "reorg: a heavier chain double-spends the payment"
read -r payer_key payer < <(kas "$WS1" new-key)
pay "$payer" 5 >/dev/null; mine 1             # the payer's one coin, known to both nodes
start_node 2 connect; same_sink
stop_node 2                                    # node 2 goes its own way from here
read -r inv addr < <(invoice KAS 1.1 3)
pay "$addr" 1.1 "$URL1" 2 "$payer_key" >/dev/null   # node 1: paid, accepted
expect_status "  node 1: the payment is accepted (paid, 1 of 3)" "$inv" paid
start_node 2                                   # isolated: the same coin spent elsewhere, 12 blocks
pay "$(kas "$WS2" new-address)" 1.1 "$URL2" 12 "$payer_key" >/dev/null
stop_node 2; start_node 2 connect; same_sink   # reconnected: node 1 switches to the heavier chain
mine 1
expect_status "  node 1 switched chains: the invoice is pending again" "$inv" pending 20
expect_eq "  the payment is reverted" "$(q "select status from invoices.payments where invoice_id = '$inv'")" "reverted"
expect_eq "  events" "$(events "$inv" | sed 's/invoice.created,invoice.finalized,//')" "payment.received,invoice.paid,payment.reverted,invoice.reverted"
echo "a mempool payment the node loses, its coin then spent elsewhere: reverted"
q "update invoices_internal.chains set mempool_grace_seconds = 1 where id = '$CHAIN'" >/dev/null
read -r payer_key payer < <(kas "$WS1" new-key)
pay "$payer" 5 >/dev/null; mine 1
read -r inv addr < <(invoice KAS 1.2 1)
pay "$addr" 1.2 "$URL1" 0 "$payer_key" >/dev/null   # in the mempool only
expect_status "  seen in the mempool: paid" "$inv" paid
stop_node 1; start_node 1                            # kaspad keeps no mempool across a restart
pay "$(kas "$WS1" new-address)" 1.2 "$URL1" 1 "$payer_key" >/dev/null   # the same coin, elsewhere, mined
expect_status "  double-spent: the invoice is pending again" "$inv" pending 20
expect_eq "  the payment is reverted" "$(q "select status from invoices.payments where invoice_id = '$inv'")" "reverted"
finish
