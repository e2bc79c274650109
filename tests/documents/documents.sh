#!/usr/bin/env bash
# The invoice PDF and the hosted invoice page, end to end through PostgREST and the nginx web
# front: the PDF's text (pdftotext), pages (pdfinfo) and QR code (rendered by pdftoppm, read
# back by zbarimg) for ETH, an ERC-20 and Bitcoin; who may fetch which invoice; status stamps;
# the page's HTML (self-contained, escaped); the page in headless Chromium (its QR code read
# from a screenshot, the countdown running, invoice.viewed recorded once, the status refreshed
# by polling and the success / failed redirects).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
source "$here/../chains/lib.sh"
bash "$here/install_tools.sh"
work=$(mktemp -d); chmod 755 "$work"
site_pid=""
cleanup() {
  if [ -n "$site_pid" ]; then kill "$site_pid" 2>/dev/null || true; fi
  pkill -f -- "--user-data-dir=$work" 2>/dev/null || true; sleep 0.2   # Chromium's helpers may linger
  rm -rf "$work" 2>/dev/null || true
  psql_ -qc "update invoices_internal.chains set active = false where id = 'docs-base'" >/dev/null 2>&1 || true
}
trap cleanup EXIT
API="$PGRST_URL"; PUB="$PUBLIC_URL"

evm_xpub=$(fresh_xpub "$EVM_XPUB")   # a key of this run's own: a key belongs to one merchant
read -r mid key other_key < <(psql_ -tA -F ' ' <<SQL | tail -1
select invoices.act_as((invoices.create_merchant('Docs <Test> & Co', 'billing@docs.test', E'1 Main St\nSpringfield') ->> 'id')::uuid) is not null as a \gset
-- rates are global per pair: this suite prices in SEK, which no other suite quotes, so no
-- other suite's fresh rate source moves its medians
select invoices.set_rate('ETH', 'SEK', 2000) is not null as r1 \gset
select invoices.set_rate('BTC', 'SEK', 50000) is not null as r2 \gset
select invoices.set_rate('USDC', 'SEK', 1) is not null as r3 \gset
select invoices.create_wallet('ETH', xpub => '$evm_xpub', gap_limit => 1000) is not null as w1 \gset
select invoices.create_wallet('USDC', xpub => '$evm_xpub', gap_limit => 1000) is not null as w2 \gset
select invoices.create_wallet('BTC', xpub => '$(fresh_xpub zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs)', gap_limit => 1000) is not null as w3 \gset
select invoices.create_api_key('docs', '{read,write}') ->> 'api_key' as k \gset
select invoices.act_as((invoices.create_merchant('Someone else') ->> 'id')::uuid) is not null as b \gset
select current_setting('invoices.merchant_id') is not null as c \gset
select (select id from invoices_internal.merchants where name = 'Docs <Test> & Co' order by created_at desc limit 1), :'k',
       invoices.create_api_key('other', '{read}') ->> 'api_key';
SQL
)
# a chain for the ERC-20's contract (the payment URI names it): active while the test runs, so
# the documents take it before any chain an earlier test left behind (its node, 127.0.0.1:9,
# refuses every poll)
psql_ -qc "select invoices.configure_chain('docs-base', 'evm', 'http://127.0.0.1:9', '{ETH,USDC}', chain_id => 8453,
             tokens => '{\"USDC\": {\"contract\": \"0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913\", \"decimals\": 6}}')" >/dev/null

# create ARGS_JSON -> invoice object (POST /rpc/create_invoice with the merchant's key)
create() { curl -fsS -X POST "$API/rpc/create_invoice" -H "X-API-Key: $key" -H 'Content-Type: application/json' -d "$1"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
inv=$(create '{"lines": [{"description": "Widget (Müller edition)", "quantity": 2, "unit_price": "50"}, {"description": "Setup", "unit_price": "25.50"}],
               "currency": "SEK", "asset": "ETH", "tax_rate": 10, "discount_amount": "5.50", "customer_name": "Bob Buyer",
               "customer_company": "Bob'"'"'s Bikes", "customer_email": "bob@example.com", "due_date": "2030-01-31",
               "notes": "Thank you for your business!", "send": true}')
slug=$(field slug <<< "$inv"); number=$(field invoice_number <<< "$inv"); id=$(field id <<< "$inv")
address=$(field address <<< "$inv"); asset_amount=$(field asset_amount <<< "$inv")
wei=$(python3 -c "from decimal import Decimal; print(int(Decimal('$asset_amount') * 10**18))")

# --- the PDF -------------------------------------------------------------------------------
code=$(curl -s -o "$work/a.pdf" -w '%{http_code} %{content_type}' -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$number")
expect_eq "PDF with the merchant's key, by number (Accept: application/pdf)" "$code" "200 application/pdf"
expect_eq "  it is a PDF" "$(head -c 5 "$work/a.pdf")" "%PDF-"
pdftotext -layout "$work/a.pdf" "$work/a.txt"
missing=""
for needle in "$number" "Docs <Test> & Co" "1 Main St" "Springfield" "billing@docs.test" "Bob Buyer" "Bob's Bikes" "bob@example.com" \
              "Widget (Müller edition)" "Setup" "Issue date" "2030-01-31" "Subtotal" "125.50 SEK" "Discount" "-5.50 SEK" "Tax (10%)" \
              "12.00 SEK" "Total" "132.00 SEK" "Pay exactly" "$(python3 -c "from decimal import Decimal; print(Decimal('$asset_amount').normalize())") ETH" \
              "1 ETH = 2,000.00 SEK" "Pay by" "$address" "Thank you for your business!" "View and pay online: $PUB/i/$slug" "page 1 of 1"; do
  grep -qF -- "$needle" "$work/a.txt" || missing="$missing [$needle]"
done
expect_eq "  the text has the parties, lines, totals, crypto amount, rate, deadline, address, notes" "$missing" ""
expect_eq "  no stamp while pending" "$(grep -cE '^\s*(PAID|EXPIRED|CANCELLED)\s*$' "$work/a.txt" || true)" "0"
expect_eq "  PDF title" "$(pdfinfo "$work/a.pdf" | sed -n 's/^Title: *//p')" "Invoice $number"
pdftoppm -r 150 -png -singlefile "$work/a.pdf" "$work/a"
expect_eq "  its QR code reads back as the EIP-681 URI" "$(zbarimg -q --raw "$work/a.png" 2>/dev/null)" "ethereum:$address@8453?value=$wei"

code=$(curl -s -o "$work/b.pdf" -w '%{http_code} %{content_type}' "$PUB/rpc/invoice_pdf?ref=$slug")
expect_eq "the pdf_url without a key, as a browser opens it (nginx asks for the PDF)" "$code" "200 application/pdf"
expect_eq "  the same document" "$(pdftotext "$work/b.pdf" - | grep -c "$number")" "$(pdftotext "$work/a.pdf" - | grep -c "$number")"
expect_eq "  pdf_url of the invoice is that URL" "$(field pdf_url <<< "$inv")" "$PUB/rpc/invoice_pdf?ref=$slug"
expect_eq "without a key, by invoice number: 404" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$number")" "404"
expect_eq "another merchant's key, by slug: 404" "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $other_key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$slug")" "404"
draft=$(create '{"lines": [{"description": "Draft", "unit_price": "1"}], "currency": "SEK"}')
expect_eq "a draft by slug without a key: 404" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$(field slug <<< "$draft")")" "404"
expect_eq "  but its merchant gets it (DRAFT stamp)" "$(curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$(field slug <<< "$draft")" | pdftotext - - | grep -c '^DRAFT$')" "1"

# other assets: the QR code of an ERC-20 transfer and of BIP21
usdc=$(create '{"lines": [{"description": "Tokens", "unit_price": "12.5"}], "currency": "SEK", "asset": "USDC", "send": true}')
curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$(field slug <<< "$usdc")" -o "$work/u.pdf"
pdftoppm -r 150 -png -singlefile "$work/u.pdf" "$work/u"
expect_eq "USDC: the QR code is an EIP-681 ERC-20 transfer" "$(zbarimg -q --raw "$work/u.png" 2>/dev/null)" \
  "ethereum:0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913@8453/transfer?address=$(field address <<< "$usdc")&uint256=12500000"
btc=$(create '{"lines": [{"description": "Sats", "unit_price": "100"}], "currency": "SEK", "asset": "BTC", "send": true}')
curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$(field slug <<< "$btc")" -o "$work/c.pdf"
pdftoppm -r 150 -png -singlefile "$work/c.pdf" "$work/c"
expect_eq "BTC: the QR code is a BIP21 URI" "$(zbarimg -q --raw "$work/c.png" 2>/dev/null)" \
  "bitcoin:$(field address <<< "$btc")?amount=0.002&label=Docs%20%3CTest%3E%20%26%20Co&message=$(field invoice_number <<< "$btc")"

# status stamps
stamp() { curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$1" | pdftotext -layout - - | grep -oE '\b(PAID|EXPIRED|CANCELLED)\b' | head -1; }
q "select invoices_internal.set_status('$mid', '$(field id <<< "$btc")', 'paid')" >/dev/null
expect_eq "a paid invoice carries PAID" "$(stamp "$(field slug <<< "$btc")")" "PAID"
# the receipt of the paid invoice: its payment (as the worker records one) and its transaction
btc_id=$(field id <<< "$btc"); btc_slug=$(field slug <<< "$btc")
q "insert into invoices_internal.payments (merchant_id, chain, txid, output_index, address, address_id, invoice_id, asset, amount_base, amount, status, block_height, block_hash, confirmed_at)
   select merchant_id, 'docs-regtest', 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9', 0, deposit_address, coalesce(address_id, 0), id, 'BTC', 200000, 0.002, 'confirmed', 7, 'h7', now()
     from invoices_internal.invoices where id = '$btc_id'" >/dev/null
code=$(curl -s -o "$work/r.pdf" -w '%{http_code} %{content_type}' "$PUB/rpc/receipt_pdf?ref=$btc_slug")
expect_eq "receipt_pdf by slug without a key (the payer's)" "$code" "200 application/pdf"
pdftotext -layout "$work/r.pdf" "$work/r.txt"
missing=""
for needle in "RECEIPT" "for invoice $(field invoice_number <<< "$btc")" "Payments received" "a1b2c3d4e5f60718293a4b5c6d7e8f90" "0.002 BTC" "Docs <Test> & Co" "Total"; do
  grep -qF -- "$needle" "$work/r.txt" || missing="$missing [$needle]"
done
expect_eq "  the parties, totals and the payment with its transaction" "$missing" ""
expect_eq "  no payment instructions on it" "$(grep -c "Pay exactly" "$work/r.txt" || true)" "0"
expect_eq "a receipt of an unpaid invoice: 409" "$(curl -s -o "$work/r.json" -w '%{http_code}' -H "X-API-Key: $key" "$API/rpc/receipt_pdf?ref=$slug")" "409"
expect_eq "  naming ref" "$(python3 -c 'import json,sys; print(json.loads(json.load(open(sys.argv[1]))["details"])["errors"][0]["field"])' "$work/r.json")" "ref"
q "select invoices_internal.set_status('$mid', '$(field id <<< "$usdc")', 'expired')" >/dev/null
expect_eq "an expired one EXPIRED" "$(stamp "$(field slug <<< "$usdc")")" "EXPIRED"

# a long invoice continues on more pages, every line in it
lines=$(python3 -c 'import json; print(json.dumps([{"description": f"Line item number {i}", "unit_price": "1"} for i in range(1, 101)]))')
long=$(create "{\"lines\": $lines, \"currency\": \"SEK\"}")
curl -s -H "X-API-Key: $key" -H 'Accept: application/pdf' "$API/rpc/invoice_pdf?ref=$(field slug <<< "$long")" -o "$work/l.pdf"
pages=$(pdfinfo "$work/l.pdf" | sed -n 's/^Pages: *//p')
[ "$pages" -ge 3 ] && ok "100 lines take $pages pages" || bad "100 lines take $pages pages"
expect_eq "  all 100 lines are in it" "$(pdftotext "$work/l.pdf" - | grep -cE '^Line item number [0-9]+$')" "100"

# --- the hosted page -----------------------------------------------------------------------
code=$(curl -s -o "$work/page.html" -w '%{http_code} %{content_type}' "$PUB/i/$slug")
expect_eq "the hosted URL serves the page" "$code" "200 text/html"
expect_eq "  hosted_url of the invoice is that URL" "$(field hosted_url <<< "$inv")" "$PUB/i/$slug"
expect_eq "  nothing loaded from elsewhere (scripts, styles, fonts, images)" \
  "$(grep -oiE '(src|href)="(https?:)?//|<link|@import|url\(' "$work/page.html" | wc -l)" "0"
expect_eq "  the merchant's name is escaped" "$(grep -c 'Docs &lt;Test&gt; &amp; Co' "$work/page.html" | sed 's/^[1-9][0-9]*$/yes/'):$(grep -c 'Docs <Test>' "$work/page.html" || true)" "yes:0"
grep -qF "$address" "$work/page.html" && grep -qF "Waiting for payment" "$work/page.html" && ok "  amount, address and status are on it" || bad "  amount, address and status are on it"
expect_eq "an unknown slug: 404" "$(curl -s -o /dev/null -w '%{http_code}' "$PUB/i/nosuchslug")" "404"
expect_eq "a draft's slug: 404" "$(curl -s -o /dev/null -w '%{http_code}' "$PUB/i/$(field slug <<< "$draft")")" "404"
expect_eq "invoice_status without a key, by slug" "$(curl -s "$PUB/rpc/invoice_status?ref=$slug" | field status)" "pending"
expect_eq "  by number: 404" "$(curl -s -o /dev/null -w '%{http_code}' "$API/rpc/invoice_status?ref=$number")" "404"

chrome() { timeout 120 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
             --user-data-dir="$work/chrome" "$@" 2>/dev/null; }
expect_eq "no view recorded before the page is opened" "$(q "select count(*) from invoices.events where invoice_id = '$id' and event = 'invoice.viewed'")" "0"
chrome --window-size=600,1000 --virtual-time-budget=3000 --screenshot="$work/shot.png" "$PUB/i/$slug" >/dev/null
expect_eq "Chromium: the QR code on the screenshot reads back as the payment URI" "$(zbarimg -q --raw "$work/shot.png" 2>/dev/null)" "ethereum:$address@8453?value=$wei"
chrome --virtual-time-budget=5000 --dump-dom "$PUB/i/$slug" > "$work/dom.html"
countdown=$(python3 -c 'import re,sys; m = re.search(r"id=\"countdown\"[^>]*>([^<]*)<", open(sys.argv[1]).read()); print(m.group(1) if m else "")' "$work/dom.html")
[[ "$countdown" =~ ^[0-9]+:[0-9]{2}(:[0-9]{2})?$ ]] && ok "  the countdown runs ($countdown left)" || bad "  the countdown runs" "[$countdown]"
# viewed_at is in no view (invoices.invoices leaves it out): read where it is stamped
wait_for 5 "select viewed_at is not null from invoices_internal.invoices where id = '$id'" && ok "  opening it stamps viewed_at" || bad "  opening it stamps viewed_at"
expect_eq "  invoice.viewed once for two openings" "$(q "select count(*) from invoices.events where invoice_id = '$id' and event = 'invoice.viewed'")" "1"

# polling: the page shows a payment that arrives while it is open, then goes to success_url
mkdir -p "$work/site"; echo '<html><body><h1>THANKS-MARKER</h1></body></html>' > "$work/site/thanks.html"
echo '<html><body><h1>FAILED-MARKER</h1></body></html>' > "$work/site/failed.html"
site_port=$((PUBLIC_PORT + 17))
(cd "$work/site" && exec python3 -m http.server "$site_port" --bind 127.0.0.1 >/dev/null 2>&1) & site_pid=$!
paying=$(create "{\"lines\": [{\"description\": \"Live\", \"unit_price\": \"10\"}], \"currency\": \"SEK\", \"asset\": \"ETH\", \"send\": true,
                 \"success_url\": \"http://127.0.0.1:$site_port/thanks.html\", \"failed_url\": \"http://127.0.0.1:$site_port/failed.html\"}")
"$LOCAL_DIR/venv/bin/python" "$here/cdp.py" "$PUB/i/$(field slug <<< "$paying")" thanks.html 40 > "$work/live.log" & cdp_pid=$!
wait_for 20 "select viewed_at is not null from invoices_internal.invoices where id = '$(field id <<< "$paying")'" || true
sleep 0.5
q "select invoices_internal.set_status('$mid', '$(field id <<< "$paying")', 'paid')" >/dev/null
if wait "$cdp_pid" && grep -q '"status": "paid"' "$work/live.log"; then
  ok "  an open page shows the payment (polling) and then goes to success_url"
else
  bad "  an open page shows the payment (polling) and then goes to success_url" "$(tr '\n' ' ' < "$work/live.log")"
fi
late=$(create "{\"lines\": [{\"description\": \"Gone\", \"unit_price\": \"10\"}], \"currency\": \"SEK\", \"asset\": \"ETH\", \"send\": true,
               \"failed_url\": \"http://127.0.0.1:$site_port/failed.html\"}")
q "select invoices_internal.set_status('$mid', '$(field id <<< "$late")', 'expired')" >/dev/null
"$LOCAL_DIR/venv/bin/python" "$here/cdp.py" "$PUB/i/$(field slug <<< "$late")" failed.html 30 > "$work/late.log" \
  && grep -q '"status": "expired"' "$work/late.log" && ok "  an expired invoice's page says so, then goes to failed_url" \
  || bad "  an expired invoice's page says so, then goes to failed_url" "$(tr '\n' ' ' < "$work/late.log")"
finish
