#!/usr/bin/env bash
# Benchmark (never a timed test): create and finalize an invoice (create_invoice(send => true),
# 3 lines, one merchant per client) on the single node and on the Citus cluster of this machine,
# in one run, as a ratio cluster / single node. Each of BENCH_RUNS runs (3) measures both, in
# alternating order, BENCH_SECONDS (15) each with BENCH_CLIENTS (8) pgbench clients; the
# figures are the median of the runs with min and max. Both servers share the same 2 cores, so
# the ratio is the cost of distribution itself (planning, connections to the workers, two-phase
# commit of the slug's row), not what more machines would add.
# Usage: bash tests/bench/citus.sh   (starts what it needs: scripts/setup.sh, scripts/citus.sh start)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
SECONDS_EACH="${BENCH_SECONDS:-15}"
CLIENTS="${BENCH_CLIENTS:-8}"
RUNS="${BENCH_RUNS:-3}"
DB=invoices_bench_citus
SINGLE_PORT="$PGPORT"
CLUSTER_PORT="${CITUS_COORDINATOR_PORT:-5440}"
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1
bash "$ROOT/scripts/citus.sh" start >/dev/null 2>&1
psql_ -p "$SINGLE_PORT" -d postgres -c "drop database if exists $DB" -c "create database $DB" >/dev/null
psql_ -p "$SINGLE_PORT" -d $DB -c "create extension invoices" >/dev/null
bash "$ROOT/scripts/citus.sh" database $DB
for port in "$SINGLE_PORT" "$CLUSTER_PORT"; do
  psql_ -p "$port" -d $DB -c "select invoices.create_merchant('Bench ' || g) from generate_series(1, $CLIENTS) g" >/dev/null
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
LINES='[{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}, {"description": "Hosting", "quantity": 1, "unit_price": "19.99"}, {"description": "Setup", "quantity": 3, "unit_price": "33.33"}]'
# each transaction acts for one of the merchants, picked at random; their ids are in a plain
# table of the coordinator (on the cluster it is not distributed: reading it touches no shard)
for port in "$SINGLE_PORT" "$CLUSTER_PORT"; do
  psql_ -p "$port" -d $DB -c "create table bench_merchants as select row_number() over (order by id) as n, id from invoices_internal.merchants" >/dev/null
done
cat > "$work/create.sql" <<SQL
\set m random(1, $CLIENTS)
select invoices.create_invoice(lines => '$LINES', customer_email => 'alice@example.com', tax_rate => 10, send => true)
  from (select set_config('invoices.merchant_id', (select id::text from bench_merchants where n = :m), false)) acting;
SQL
run() {  # PORT -> tx/s
  psql_ -p "$1" -d $DB -qc "vacuum analyze" -c "checkpoint" >/dev/null 2>&1 || true
  "$PG_BIN/pgbench" -h 127.0.0.1 -p "$1" -n -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$work/create.sql" $DB 2>&1 \
    | awk '/^tps/ {print int($3)}'
}
echo "create + finalize (3 lines), $CLIENTS clients, ${SECONDS_EACH}s per measure, $RUNS runs"
singles=(); clusters=(); ratios=()
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then s=$(run "$SINGLE_PORT"); c=$(run "$CLUSTER_PORT"); else c=$(run "$CLUSTER_PORT"); s=$(run "$SINGLE_PORT"); fi
  singles+=("$s"); clusters+=("$c")
  ratios+=("$(awk -v c="$c" -v s="$s" 'BEGIN { printf "%.2f", c / s }')")
  echo "  run $r: single node $s tx/s, cluster $c tx/s, ratio ${ratios[-1]}"
done
stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%s (min %s, max %s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
echo "single node:            $(stats "${singles[@]}") tx/s"
echo "cluster (2 workers):    $(stats "${clusters[@]}") tx/s"
echo "ratio cluster / single: $(stats "${ratios[@]}")"
psql_ -p "$SINGLE_PORT" -d postgres -c "drop database $DB" >/dev/null
bash "$ROOT/scripts/citus.sh" drop-database $DB
