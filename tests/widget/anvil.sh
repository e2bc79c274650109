#!/usr/bin/env bash
# The pay button while its invoice is paid on a real Anvil (automine, 2 confirmations): in
# headless Chromium, from a page on another origin, onPayment fires with the transaction hash
# within 3 s of its block, onStatus sees paid, then confirmed once the next block comes, and
# the checkout open in its modal shows pending, paid, then confirmed.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
bash "$ROOT/tests/documents/install_tools.sh" >/dev/null
bash "$ROOT/tests/http/install_clients.sh" >/dev/null
PORT=$((PGPORT + 2201)); SITE_PORT=$((PGPORT + 2202))
CHAIN="widget-anvil-$(date +%s)"
work=$(mktemp -d)
export ETH_RPC="http://127.0.0.1:$PORT"
evm() { python3 "$here/../chains/evm_rpc.py" "$@"; }
trap 'kill ${proxy:-} ${anvil:-} ${site:-} 2>/dev/null || true; psql_ -qc "update invoices_internal.chains set active = false where id = '"'"'$CHAIN'"'"'" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$ANVIL_BIN" --port "$PORT" --chain-id 8453 --silent >/dev/null 2>&1 & anvil=$!
for _ in $(seq 100); do evm height >/dev/null 2>&1 && break; sleep 0.05; done
mid=$(evm_merchant "Widget on Anvil")
psql_ -qc "update invoices_internal.chains set confirmations = 2 where id = '$CHAIN'"
read -r id address < <(invoice ETH 0.01 2)
slug=$(q "select slug from invoices.invoices where id = '$id'")
# the browser's requests go through a proxy that gives them a client address of this run's own
export WIDGET_PROXY_PORT=$((PGPORT + 2204))
python3 "$here/proxy.py" "$WIDGET_PROXY_PORT" "2001:db8:$(printf '%x' $((RANDOM % 65536))):$(printf '%x' $((RANDOM % 65536)))::1" "$work/proxy.log" & proxy=$!
mkdir -p "$work/site" "$work/signal"
cat > "$work/site/shop.html" <<HTML
<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>
<div id="pay"></div>
<script src="$PUBLIC_URL/widget.js"></script>
<script>
  window.statuses = [];
  LivingInvoices.createButton({invoice: '$slug', container: '#pay', theme: 'dark', pollMs: 250,
    onStatus: function (s) { window.statuses.push(s); },
    onPayment: function (r) { window.paid = r; window.paidAt = Date.now(); }});
</script></body></html>
HTML
python3 -m http.server "$SITE_PORT" --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 & site=$!
"$LOCAL_DIR/venv/bin/python" "$here/pay.py" "http://127.0.0.1:$SITE_PORT/shop.html" "$work/signal" 40 > "$work/seen.json" & watcher=$!
for _ in $(seq 300); do [ -e "$work/signal/ready" ] && break; sleep 0.1; done
tx=$(evm send-eth "$address" 0.01)
evm wait-receipt "$tx" > /dev/null
mined_at=$(($(date +%s%N) / 1000000))   # automine: the block comes with the transaction
sleep 4   # the page polls every invoices.page_poll_ms (3 s)
evm mine 1   # the second confirmation
wait $watcher || true
s() { jq -r "$1" "$work/seen.json"; }
expect_eq "onPayment gets the transaction hash, the status, the amount and the asset" \
  "$(s '[.paid.tx_id, .paid.status, .paid.amount, .paid.asset] | join(" ")')" "$tx paid 0.01 ETH"
lag=$(( $(s .paid_at) - mined_at ))
check "  within 3 s of the block (${lag} ms)" [ "$lag" -lt 3000 ]
expect_eq "onStatus: pending, paid, then confirmed at the second block" "$(s '.statuses | join(",")')" "pending,paid,confirmed"
expect_eq "the button says so" "$(s .text)" "Paid 0.01 ETHConfirmed"
expect_eq "the checkout in the modal shows it too: pending, paid, then confirmed" "$(s '.modal | join(",")')" "pending,paid,confirmed"
finish
