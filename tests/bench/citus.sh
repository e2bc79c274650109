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
source "$here/lib.sh"
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
# CPU time of one server (its postmaster, the backends that ended, the live ones), in ticks
cpu_ticks() {  # DATADIR
  local pm; pm=$(head -1 "$1/postmaster.pid")
  { cat "/proc/$pm/stat"; cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" '$4 == pm'; } \
    | awk -v pm="$pm" '{ sub(/^.*\) /, ""); t += $12 + $13; if (NR == 1) t += $14 + $15 } END { print t }'
}
SINGLE_DIR="$PGDATA" COORD_DIR="$LOCAL_DIR/citus/node-$CLUSTER_PORT"
WORKER_DIRS=$(for p in ${CITUS_WORKER_PORTS:-5441 5442}; do echo "$LOCAL_DIR/citus/node-$p"; done)
ticks=$(getconf CLK_TCK)
run() {  # PORT -> "tx/s transactions cpu_ms_single_or_coordinator cpu_ms_workers"
  psql_ -p "$1" -d $DB -qc "vacuum analyze" -c "checkpoint" >/dev/null 2>&1 || true
  local a b w0=0 w1=0 d out
  if [ "$1" = "$SINGLE_PORT" ]; then a=$(cpu_ticks "$SINGLE_DIR"); else a=$(cpu_ticks "$COORD_DIR"); fi
  for d in $WORKER_DIRS; do w0=$((w0 + $(cpu_ticks "$d"))); done
  out=$("$PG_BIN/pgbench" -h 127.0.0.1 -p "$1" -n -c "$CLIENTS" -j 2 -T "$SECONDS_EACH" -f "$work/create.sql" $DB 2>&1)
  if [ "$1" = "$SINGLE_PORT" ]; then b=$(cpu_ticks "$SINGLE_DIR"); else b=$(cpu_ticks "$COORD_DIR"); fi
  for d in $WORKER_DIRS; do w1=$((w1 + $(cpu_ticks "$d"))); done
  awk -v tps="$(awk '/^tps/ {print int($3)}' <<< "$out")" -v n="$(awk '/number of transactions actually processed/ {print $NF}' <<< "$out" | cut -d/ -f1)" \
      -v own=$((b - a)) -v workers=$((w1 - w0)) -v hz="$ticks" -v single="$([ "$1" = "$SINGLE_PORT" ] && echo 1 || echo 0)" \
      'BEGIN { printf "%d %d %.3f %.3f\n", tps, n, own * 1000 / hz / n, (single ? 0 : workers * 1000 / hz / n) }'
}
echo "create + finalize (3 lines), $CLIENTS clients, ${SECONDS_EACH}s per measure, $RUNS runs"
singles=(); clusters=(); ratios=(); cpu_single=(); cpu_coord=(); cpu_workers=()
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then s=$(run "$SINGLE_PORT"); c=$(run "$CLUSTER_PORT"); else c=$(run "$CLUSTER_PORT"); s=$(run "$SINGLE_PORT"); fi
  read -r s _ s_cpu _ <<< "$s"; read -r c _ c_cpu w_cpu <<< "$c"
  singles+=("$s"); clusters+=("$c"); cpu_single+=("$s_cpu"); cpu_coord+=("$c_cpu"); cpu_workers+=("$w_cpu")
  ratios+=("$(awk -v c="$c" -v s="$s" 'BEGIN { printf "%.2f", c / s }')")
  echo "  run $r: single node $s tx/s, cluster $c tx/s, ratio ${ratios[-1]};" \
       "CPU ms per invoice: single node $s_cpu, coordinator $c_cpu, workers $w_cpu"
done
echo "single node:            $(bench_stats "${singles[@]}") tx/s"
echo "cluster (2 workers):    $(bench_stats "${clusters[@]}") tx/s"
echo "ratio cluster / single: $(bench_stats "${ratios[@]}")"
for x in "${ratios[@]}"; do bench_figure "Citus: create + finalize on 2 workers / on one node (one machine)" "$x"; done
echo "server CPU per invoice (ms): single node $(bench_stats "${cpu_single[@]}"), coordinator $(bench_stats "${cpu_coord[@]}"), workers together $(bench_stats "${cpu_workers[@]}")"
psql_ -p "$SINGLE_PORT" -d postgres -c "drop database $DB" >/dev/null
bash "$ROOT/scripts/citus.sh" drop-database $DB
