#!/usr/bin/env bash
# The worker's rates task against a local server speaking the CoinGecko, Kraken and Coinbase
# formats (tests/stubs/rates_server.py): the median of three sources; a source that times out,
# answers HTTP 500 or garbage is recorded and backs off, and changes neither the rate nor the
# worker's other work. Pair BTC/CHF is used by this test only.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../lib.sh"
PORT="${RATES_STUB_PORT:-18799}"
python3 "$here/../stubs/rates_server.py" "$PORT" &
stub=$!
trap 'kill $stub 2>/dev/null || true; psql_ -qc "delete from invoices_internal.rate_sources where name like '"'"'test-%'"'"'" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$PORT"

psql_ -q >/dev/null <<SQL
delete from invoices_internal.rate_sources where name like 'test-%';
delete from invoices_internal.rate_observations where source like 'test-%' or (asset = 'BTC' and currency = 'CHF');
select invoices.create_rate_source('test-coingecko', 'coingecko', 'BTC', 'CHF',
  invoices_internal.rate_source_url('coingecko', '$base/ok/67000', 'BTC', 'CHF'), interval_seconds => 1) is not null;
select invoices.create_rate_source('test-kraken', 'kraken', 'BTC', 'CHF',
  invoices_internal.rate_source_url('kraken', '$base/ok/67100', 'BTC', 'CHF'), interval_seconds => 1) is not null;
select invoices.create_rate_source('test-coinbase', 'coinbase', 'BTC', 'CHF',
  invoices_internal.rate_source_url('coinbase', '$base/ok/67300.5', 'BTC', 'CHF'), interval_seconds => 1) is not null;
SQL
pid=$(worker_pid)
[ -n "$pid" ] && ok "the worker runs (pid $pid)" || bad "the worker runs"

echo "three good sources"
if wait_for 10 "select count(*) = 3 from invoices.rate_sources where name like 'test-%' and last_success_at is not null"; then
  ok "all three fetched within 10 s"
else
  bad "all three fetched" "$(q "select name, last_error from invoices.rate_sources where name like 'test-%'")"
fi
expect_eq "CoinGecko simple/price read" "$(q "select last_rate from invoices.rate_sources where name = 'test-coingecko'")" "67000"
expect_eq "Kraken Ticker read (last trade)" "$(q "select last_rate from invoices.rate_sources where name = 'test-kraken'")" "67100"
expect_eq "Coinbase spot read" "$(q "select last_rate from invoices.rate_sources where name = 'test-coinbase'")" "67300.5"
expect_eq "the median of the three is used" \
  "$(q "select distinct median_rate from invoices.rates where asset = 'BTC' and currency = 'CHF'")" "67100"

echo "a source that times out, one that answers HTTP 500, one that answers garbage"
runs_before=$(q "select runs from invoices.worker_status where task = 'expiry'")
psql_ -q >/dev/null <<SQL
select invoices.create_rate_source('test-timeout', 'coingecko', 'BTC', 'CHF',
  invoices_internal.rate_source_url('coingecko', '$base/slow/3', 'BTC', 'CHF'), interval_seconds => 1, timeout_ms => 300) is not null;
select invoices.create_rate_source('test-http500', 'coinbase', 'BTC', 'CHF',
  invoices_internal.rate_source_url('coinbase', '$base/status/500', 'BTC', 'CHF'), interval_seconds => 1) is not null;
select invoices.create_rate_source('test-garbage', 'kraken', 'BTC', 'CHF',
  invoices_internal.rate_source_url('kraken', '$base/garbage/x', 'BTC', 'CHF'), interval_seconds => 1) is not null;
SQL
if wait_for 10 "select count(*) = 3 from invoices.rate_sources where name in ('test-timeout', 'test-http500', 'test-garbage') and failures >= 2"; then
  ok "each bad source failed (twice) and was recorded"
else
  bad "bad sources recorded" "$(q "select name, failures, last_error from invoices.rate_sources where name like 'test-%'")"
fi
err() { q "select last_error from invoices.rate_sources where name = '$1'"; }
case "$(err test-timeout)" in *"timed out"*) ok "timeout recorded: $(err test-timeout)" ;; *) bad "timeout recorded" "$(err test-timeout)" ;; esac
case "$(err test-http500)" in *"HTTP 500"*) ok "HTTP 500 recorded: $(err test-http500)" ;; *) bad "HTTP 500 recorded" "$(err test-http500)" ;; esac
case "$(err test-garbage)" in *"not JSON"*) ok "garbage recorded: $(err test-garbage)" ;; *) bad "garbage recorded" "$(err test-garbage)" ;; esac
expect_eq "no rate came from a bad source" \
  "$(q "select count(*) from invoices.rates where source in ('test-timeout', 'test-http500', 'test-garbage')")" "0"
expect_eq "the median is unchanged" \
  "$(q "select distinct median_rate from invoices.rates where asset = 'BTC' and currency = 'CHF'")" "67100"
expect_eq "the good sources kept succeeding" \
  "$(q "select bool_and(consecutive_failures = 0 and successes >= 2) from invoices.rate_sources where name in ('test-coingecko', 'test-kraken', 'test-coinbase')")" "t"
expect_eq "the worker did not restart" "$(worker_pid)" "$pid"
runs_after=$(q "select runs from invoices.worker_status where task = 'expiry'")
[ "$runs_after" -gt "$runs_before" ] && ok "the expiry task kept running ($runs_before -> $runs_after runs)" \
  || bad "the expiry task kept running" "$runs_before -> $runs_after"
backoff=$(q "select extract(epoch from next_fetch_at - last_error_at)::int from invoices.rate_sources where name = 'test-http500'")
[ "$backoff" -ge 2 ] && ok "a failing source backs off (next fetch in ${backoff}s, interval 1 s)" || bad "back-off" "$backoff"

echo "quotes use the median"
psql_ -q >/dev/null <<'SQL'
select invoices.act_as((invoices.create_merchant('Rates test', default_currency => 'CHF') ->> 'id')::uuid) is not null;
SQL
quote=$(psql_ -tA <<'SQL'
select invoices.act_as(id) is not null from invoices_internal.merchants where name = 'Rates test' order by created_at desc limit 1;
select invoices.create_invoice(lines => '[{"description": "Espresso machine", "unit_price": "1342.00"}]',
                               asset => 'BTC', send => true) ->> 'id' as id \gset
select rate || ' ' || asset_amount || ' ' || array_to_string(rate_sources, ',') from invoices.quotes where invoice_id = :'id';
SQL
)
expect_eq "a CHF invoice in BTC is quoted at the median, rounded up to the satoshi" "$(echo "$quote" | tail -1)" \
  "67100 0.02000000 test-coinbase,test-coingecko,test-kraken"
finish
