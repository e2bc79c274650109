#!/usr/bin/env bash
# Benchmark: address allocation from the carousel with a pool of 1,000 and of 1,000,000 free
# addresses (BENCH_SECONDS, BENCH_CLIENTS). Each transaction takes the oldest free address for
# a pending invoice (assign_address: the carousel's pick, the address and invoice updates, the
# assignment history) and rolls back, so the pool stays the same size. The pool's addresses
# are synthetic rows (derivation is not what is measured). Prints both rates and their ratio
# (target >= 0.9: the cost must not grow with the pool).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SECONDS_EACH="${BENCH_SECONDS:-15}"
CLIENTS="${BENCH_CLIENTS:-8}"
DB=invoices_bench_addresses
work=$(mktemp -d)
trap 'rm -rf "$work"; psql_ -d postgres -qc "drop database if exists $DB" >/dev/null 2>&1 || true' EXIT
run_pool() {
  local pool=$1
  psql_ -d postgres -c "drop database if exists $DB" -c "create database $DB" >/dev/null 2>&1
  psql_ -d $DB -c "create extension invoices" >/dev/null
  psql_ -d $DB -tA -v pool="$pool" -v clients="$CLIENTS" > "$work/ids" <<'SQL'
select invoices.act_as((invoices.create_merchant('Pool ' || :pool) ->> 'id')::uuid) is not null as acting \gset
select invoices.set_rate('BTC', 'USD', 67000) is not null as rate \gset
select (invoices.create_wallet('BTC', xpub => 'zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs', gap_limit => 1000) ->> 'id') as wallet \gset
insert into invoices_internal.addresses (merchant_id, wallet_id, address, derivation_index, available_at)
select current_setting('invoices.merchant_id')::uuid, :'wallet', 'synthetic-' || g, g, now() - interval '1 day' + g * interval '1 ms'
  from generate_series(0, :pool - 1) g;
update invoices_internal.wallets set next_index = :pool where id = :'wallet';
analyze invoices_internal.addresses;
-- one pending invoice without an address per client (BTC invoices; the wallet is attached after)
select current_setting('invoices.merchant_id');
select invoices.create_invoice(lines => '[{"description": "x", "unit_price": 10}]', send => true) ->> 'id'
  from generate_series(1, :clients);
SQL
  local mid; mid=$(sed -n 1p "$work/ids")
  # each client works on its own invoice
  mapfile -t invs < <(sed -n '2,$p' "$work/ids")
  {
    echo "\\set c :client_id % ${#invs[@]}"
    echo "begin;"
    echo "select invoices_internal.assign_address('$mid', (array['$(IFS=,; echo "${invs[*]}" | sed "s/,/','/g")'])[:c + 1]::uuid);"
    echo "rollback;"
  } > "$work/alloc.sql"
  psql_ -d $DB -c "update invoices_internal.invoices set asset = 'BTC'" >/dev/null
  "$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$work/alloc.sql" $DB 2>&1 | awk '/^tps/ {print int($3)}'
}
echo "address allocation: $CLIENTS clients, ${SECONDS_EACH}s per pool"
small=$(run_pool 1000)
echo "  pool of 1,000 free addresses:     $small allocations/s"
large=$(run_pool 1000000)
echo "  pool of 1,000,000 free addresses: $large allocations/s"
awk -v a="$large" -v b="$small" 'BEGIN { printf "  ratio 1,000,000 / 1,000: %.2f (target >= 0.9)\n", a / b }'
bench_figure "address allocation, pool of 1M / pool of 1k" "$(awk -v a="$large" -v b="$small" 'BEGIN { printf "%.3f", a / b }')" "all >= 0.9"
