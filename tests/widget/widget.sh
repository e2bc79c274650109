#!/usr/bin/env bash
# The pay button (Living Invoices' embed widget) in headless Chromium, on a page served from
# another origin: the script tag, createButton, the four themes (screenshots in .local/ whose
# pixels differ), keyboard only (Tab, Enter opens the checkout modal, Escape closes it and gives
# the focus back), a partial payment showing the remaining amount, onPayment with the
# transaction, an expired invoice, destroy(), the script's size, and no request to any host but
# the project's and the page's own. Payments are recorded as the worker records a poll.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"   # EVM_XPUB
bash "$ROOT/tests/documents/install_tools.sh" >/dev/null   # chromium
bash "$ROOT/tests/http/install_clients.sh" >/dev/null      # websocket-client in .local/venv
work=$(mktemp -d)
SITE_PORT=$((PGPORT + 2200))
CHAIN="widget-$(date +%s%N | tail -c 7)"
trap 'kill ${proxy:-} ${site:-} 2>/dev/null; psql_ -qc "update invoices_internal.chains set active = false where id = '"'"'$CHAIN'"'"'" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# the README shows these screenshots: the test makes them, so they stay current
SHOTS="$ROOT/docs/screenshots"
mkdir -p "$SHOTS"

evm_xpub=$(fresh_xpub "$EVM_XPUB")
read -r MID PAY THEMES EXPIRED HALF < <(psql_ -tA -F ' ' -v evm="$evm_xpub" -v chain="$CHAIN" <<'SQL' | tail -1
select (invoices.create_merchant('Widget Shop ' || clock_timestamp()) ->> 'id') as mid \gset
select invoices.act_as(:'mid') is not null as acting \gset
-- rates are global per pair: this suite prices in NOK, which no other suite quotes
select invoices.set_rate('ETH', 'NOK', 20000) is not null as r \gset
select invoices.create_wallet('ETH', xpub => :'evm', gap_limit => 1000) is not null as w \gset
select invoices.configure_chain(:'chain', 'evm', 'http://127.0.0.1:9', '{ETH}', chain_id => 8453) is not null as c \gset
select invoices.create_invoice(lines => '[{"description": "Widget", "unit_price": "100"}]', currency => 'NOK', asset => 'ETH', send => true) ->> 'slug' as pay \gset
select invoices.create_invoice(lines => '[{"description": "Themes", "unit_price": "50"}]', currency => 'NOK', asset => 'ETH', send => true) ->> 'slug' as themes \gset
select invoices.create_invoice(lines => '[{"description": "Late", "unit_price": "10"}]', currency => 'NOK', asset => 'ETH', send => true) ->> 'slug' as late \gset
select invoices.create_invoice(lines => '[{"description": "Half paid", "unit_price": "40"}]', currency => 'NOK', asset => 'ETH', send => true) ->> 'slug' as half \gset
update invoices_internal.invoices set expires_at = now() where merchant_id = :'mid' and slug = :'late';
select invoices_internal.expire_and_mark_overdue() is not null as swept \gset
select :'mid', :'pay', :'themes', :'late', :'half';
SQL
)

section "the script"
curl -s -D "$work/h" -o "$work/widget.js" "$PUBLIC_URL/widget.js"
expect_eq "GET /widget.js: JavaScript, for any origin" \
  "$(grep -ci '^content-type: text/javascript' "$work/h") $(grep -ci '^access-control-allow-origin: \*' "$work/h")" "1 1"
gz=$(gzip -9c "$work/widget.js" | wc -c)
check "  gzipped under 15 KB ($gz bytes)" [ "$gz" -lt 15360 ]
expect_eq "  it names no host (it talks to the one it came from)" "$(grep -cE 'https?://' "$work/widget.js" || true)" "0"
curl -s -D "$work/ph" -o /dev/null "$PUBLIC_URL/i/$PAY"
expect_eq "the checkout may be framed (frame-ancestors, no X-Frame-Options: DENY)" \
  "$(grep -ci 'content-security-policy: frame-ancestors \*' "$work/ph") $(grep -ci '^x-frame-options' "$work/ph" || true)" "1 0"

section "a merchant's page on another origin (127.0.0.1:$SITE_PORT)"
# the browser's requests go through a proxy that gives them a client address of this run's own
export WIDGET_PROXY_PORT=$((PGPORT + 2203))
python3 "$here/proxy.py" "$WIDGET_PROXY_PORT" "2001:db8:$(printf '%x' $((RANDOM % 65536))):$(printf '%x' $((RANDOM % 65536)))::1" "$work/proxy.log" & proxy=$!
mkdir -p "$work/site"
cat > "$work/site/shop.html" <<HTML
<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>
<h1>Checkout</h1>
<div id="embed"><script src="$PUBLIC_URL/widget.js" data-invoice="$PAY" data-theme="light"></script></div>
<div id="themes"></div><div id="api"></div><div id="expired"></div>
<script src="$PUBLIC_URL/widget.js"></script>
<script>
  window.statuses = [];
  ['light', 'dark', 'minimal', 'kaspa'].forEach(function (t) {
    LivingInvoices.createButton({invoice: '$THEMES', container: '#themes', theme: t});
  });
  window.api = LivingInvoices.createButton({invoice: '$PUBLIC_URL/i/$PAY', container: '#api', theme: 'kaspa',
    text: 'Pay Now', pollMs: 500,
    onStatus: function (s) { window.statuses.push(s); },
    onPayment: function (result) { window.paid = result; window.paidAt = Date.now(); }});
  LivingInvoices.createButton({invoice: '$EXPIRED', container: '#expired', theme: 'minimal'});
</script></body></html>
HTML
python3 -m http.server "$SITE_PORT" --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 & site=$!
mkdir -p "$work/signal"
CHECKOUTS="waiting=$THEMES,partial=$HALF,paid=$PAY,expired=$EXPIRED" \
"$LOCAL_DIR/venv/bin/python" "$here/browser.py" "http://127.0.0.1:$SITE_PORT/shop.html" "$SHOTS" "$PUBLIC_URL" "$work/signal" \
  > "$work/facts.json" & browser=$!
# the payments, once the page is up: half the amount, then the rest (as a poll records them)
for _ in $(seq 900); do [ -e "$work/signal/ready" ] && break; sleep 0.1; done
read -r address due < <(q "select address || ' ' || asset_amount from invoices.invoices where slug = '$PAY'" | tr -d '\n'; echo)
pay() {
  q "select invoices_internal.record_chain_poll('$CHAIN', jsonb_build_object(
       'tip', jsonb_build_object('height', 10, 'hash', 'h10'), 'blocks', '[]'::jsonb, 'transfers', '[]'::jsonb,
       'mempool', jsonb_build_array(jsonb_build_object('txid', '$1', 'index', -1, 'address', '$address',
         'asset', 'ETH', 'amount_base', trunc($2 * 1e18)::text, 'amount', ($2)::text, 'block', null))))" > /dev/null
}
half=$(q "select round($due / 2, 18)")
pay 0xwidgetpartial "$half"
# a fourth invoice, half paid, for the checkout's screenshots
read -r address_half due_half < <(q "select address || ' ' || asset_amount from invoices.invoices where slug = '$HALF'" | tr -d '\n'; echo)
(address=$address_half; pay 0xwidgethalf "round($due_half / 2, 18)")
for _ in $(seq 300); do [ -e "$work/signal/partial_seen" ] && break; sleep 0.1; done
sleep 1
paid_at=$(($(date +%s%N) / 1000000))
pay 0xwidgetrest "($due - $half)"
wait $browser || true
f() { jq -r "$1" "$work/facts.json"; }

expect_eq "the script tag renders a button where it stands; createButton renders the others" "$(f .rendered)" "true"
expect_eq "  each shows the amount and the asset" "$(f '.labels | map(test("ETH")) | all')" "true"
expect_eq "the four themes differ (screenshots in docs/screenshots/)" "$(f .themes_differ)" "true"
expect_eq "createButton with onPayment and onStatus" "$(f .api_button)" "true"
expect_eq "text contrast at least 4.5:1 (AA) in every theme" "$(f '.contrast | to_entries | map(.value >= 4.5) | all')" "true"
echo "       contrast: $(f '.contrast | to_entries | map(.key + " " + (.value * 10 | floor / 10 | tostring)) | join(", ")')"
expect_eq "on a narrow screen the checkout opens in a new tab" "$(f .narrow_opens_tab)" "true"
expect_eq "keyboard: Tab reaches the button" "$(f .tab_reaches_button)" "true"
expect_eq "  Enter opens the checkout in a modal, the focus inside it" "$(f '[.enter_opens_modal, .focus_in_modal] | map(tostring) | join(" ")')" "true true"
expect_eq "  Escape closes it and the focus returns to the button" "$(f '[.escape_closes, .focus_returns] | map(tostring) | join(" ")')" "true true"
expect_eq "a partial payment shows the remaining amount" "$(f .partial_shown)" "true"
expect_eq "onPayment gets the transaction, status, amount and asset" \
  "$(f '.payment | [.tx_id, .status, .asset, (.amount | length > 0)] | map(tostring) | join(" ")')" "0xwidgetrest paid ETH true"
check "  within 3 s of the payment's recording" [ $(( $(f .on_payment_at) - paid_at )) -lt 3000 ]
expect_eq "  onStatus saw partial, then paid" "$(f '.statuses | join(",")')" "pending,partial,paid"
expect_eq "an expired invoice says so" "$(f .expired_shown)" "true"
expect_eq "  and its amount follows today's median rate (10 NOK at 20,000 NOK/ETH)" "$(f .expired_text)" "Pay ≈ 0.0005 ETHExpired: at today’s rate"
expect_eq "destroy() removes the button" "$(f .destroyed)" "true"
expect_eq "no request left for any other host" "$(f '.other_hosts | length')" "0"
expect_eq "  the proxy in front of the browser forwarded only to the project's and the page's hosts" \
  "$(grep '^forwarded ' "$work/proxy.log" | grep -vcE "^forwarded http://127\.0\.0\.1:($PUBLIC_PORT|$SITE_PORT)/" || true)" "0"
echo "       ($(grep -c '^forwarded ' "$work/proxy.log") forwarded; $(grep -c '^refused ' "$work/proxy.log" || true) of Chromium's own, to other hosts, refused)"
expect_eq "the checkout's states, as the page says them (screenshots in docs/screenshots/)" \
  "$(f '[.checkout_waiting, .checkout_partial, .checkout_paid, .checkout_expired] | join(" | ")')" \
  "pending: Waiting for payment | partial: Partially paid: send the remaining 0.001 ETH | paid: Payment received, waiting for a block | expired: This invoice has expired"

section "the checkout names the network, and says where the payment is"
curl -s "$PUBLIC_URL/i/$THEMES" > "$work/page.html"
expect_eq "the page: Network: Base (chain id 8453), beside the amount and in Send ETH on …" \
  "$(grep -c 'Network: <strong>Base (chain id 8453)</strong>' "$work/page.html") $(grep -c 'Send ETH on Base (chain id 8453) to this address' "$work/page.html")" "1 1"
expect_eq "  copy buttons for the amount and the address, a QR code, Open in wallet" \
  "$(grep -o 'id="copy-amount"\|id="copy"\|<svg\|id="wallet"' "$work/page.html" | LC_ALL=C sort -u | tr '\n' ' ')" '<svg id="copy" id="copy-amount" id="wallet" '
curl -s -H 'Accept: application/pdf' "$PUBLIC_URL/rpc/invoice_pdf?ref=$THEMES" -o "$work/t.pdf"
expect_eq "the PDF: Network  Base (chain id 8453)" "$(pdftotext -layout "$work/t.pdf" - | grep -c 'Network *Base (chain id 8453)')" "1"
curl -s "$PUBLIC_URL/rpc/invoice_status?ref=$PAY" > "$work/status.json"
expect_eq "invoice_status: paid, its payments in the mempool, 0 of 1 confirmations, nothing left to send" \
  "$(jq -r '[.status, .payment.state, .payment.confirmations, .payment.required, .asset_due, .latest_txid] | join(" ")' "$work/status.json")" \
  "paid mempool 0 1 0.000000000000000000 0xwidgetrest"

section "an expired invoice: a new quote from the checkout, when the merchant allows it"
rq() { curl -s -o "$work/rq.json" -w '%{http_code}' -X POST "$PUBLIC_URL/rpc/requote_expired" -H "X-Real-IP: 2001:db8:5eed::$((RANDOM % 1000))" \
         -H 'Content-Type: application/json' -d "{\"slug\": \"$1\"}"; }
expect_eq "not allowed (the default): 403, the page has no button" \
  "$(rq "$EXPIRED") $(curl -s "$PUBLIC_URL/i/$EXPIRED" | grep -c 'id="requote"' || true)" "403 0"
q "select invoices.act_as('$MID') is not null; select invoices.allow_public_requote(true) is not null" > /dev/null
expect_eq "allowed: the expired page offers \"Get a new quote\"" "$(curl -s "$PUBLIC_URL/i/$EXPIRED" | grep -c 'Get a new quote')" "1"
expect_eq "  and it gives a fresh quote, without a key" "$(rq "$EXPIRED") $(jq -r '.status + " " + .asset' "$work/rq.json")" "200 pending ETH"
expect_eq "  a second time: the invoice is not expired any more, refused" "$(rq "$EXPIRED")" "409"
expect_eq "  by number, nothing" "$(rq INV-0001)" "404"
finish
