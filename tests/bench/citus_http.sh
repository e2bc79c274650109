#!/usr/bin/env bash
# Benchmark (never a timed test): create invoices over HTTP, POST /rpc/create_invoice through
# PostgREST (3 lines, send => true, X-API-Key of 8 merchants in turn), on the single node and on
# the Citus cluster's coordinator, in one run: the cluster's rate as a ratio to the single
# node's. Each side gets a database and a PostgREST of its own (nothing is left in the demo
# databases): the single node's on :3120, the cluster's on :3122. BENCH_RUNS (3) runs, each
# measuring both in alternating order for BENCH_SECONDS (15) with wrk and BENCH_CONNECTIONS (8)
# connections; figures are the median of the runs with min and max.
# Usage: bash tests/bench/citus_http.sh   (starts what it needs: scripts/setup.sh, scripts/citus.sh start)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
source "$here/lib.sh"
SECONDS_EACH="${BENCH_SECONDS:-15}"
CONNS="${BENCH_CONNECTIONS:-8}"
RUNS="${BENCH_RUNS:-3}"
DB=invoices_bench_http
SINGLE_PORT="$PGPORT" CLUSTER_PORT="${CITUS_COORDINATOR_PORT:-5440}"
SINGLE_API=3120 CLUSTER_API=3122
command -v wrk >/dev/null || sudo_ apt-get install -y -qq wrk >/dev/null
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1
bash "$ROOT/scripts/citus.sh" start >/dev/null 2>&1
work=$(mktemp -d)
cleanup() {
  bench_postgrest_stop single; bench_postgrest_stop cluster
  psql_ -p "$SINGLE_PORT" -d postgres -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/citus.sh" drop-database $DB >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql_ -p "$SINGLE_PORT" -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB" >/dev/null
psql_ -p "$SINGLE_PORT" -d $DB -c "create extension invoices" >/dev/null
bash "$ROOT/scripts/citus.sh" database $DB
for side in single cluster; do
  if [ $side = single ]; then port=$SINGLE_PORT api=$SINGLE_API; else port=$CLUSTER_PORT api=$CLUSTER_API; fi
  # 8 merchants, one key each with the rate limit raised for the run
  psql_ -p "$port" -d $DB -tA > "$work/$side.keys" <<'SQL'
select invoices_internal.insert_api_key((invoices.create_merchant('HTTP bench ' || g)->>'id')::uuid,
                                        'bench', '{read,write}', 100000000)->>'api_key'
  from generate_series(1, 8) g;
SQL
  bench_create_lua "$work/$side.keys" > "$work/$side.lua"
  bench_postgrest "$side" "$port" $DB "$api"
done
measure() {  # SIDE -> "rate p99 non2xx"
  local port api
  if [ "$1" = single ]; then port=$SINGLE_PORT api=$SINGLE_API; else port=$CLUSTER_PORT api=$CLUSTER_API; fi
  psql_ -p "$port" -d $DB -qc "vacuum analyze" -c "checkpoint" >/dev/null 2>&1 || true
  sleep 2   # a quiet start
  wrk -t 2 -c "$CONNS" -d "${SECONDS_EACH}s" -s "$work/$1.lua" "http://127.0.0.1:$api" \
    | awk '/^RESULT/ { printf "%d %s %d\n", $2 / ($3 / 1e6), $5, $7 }'
}
echo "HTTP create (3 lines, send => true) through PostgREST, wrk $CONNS connections, ${SECONDS_EACH}s per measure, $RUNS runs"
s_rates=(); c_rates=(); ratios=(); s_p99=(); c_p99=()
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then s=$(measure single); c=$(measure cluster); else c=$(measure cluster); s=$(measure single); fi
  read -r sr sp sn <<< "$s"; read -r cr cp cn <<< "$c"
  s_rates+=("$sr"); c_rates+=("$cr"); s_p99+=("$sp"); c_p99+=("$cp")
  ratios+=("$(awk -v c="$cr" -v s="$sr" 'BEGIN { printf "%.2f", c / s }')")
  echo "  run $r: single node $sr/s (p99 $sp ms, non-2xx $sn), cluster $cr/s (p99 $cp ms, non-2xx $cn), ratio ${ratios[-1]}"
done
echo "single node:            $(bench_stats "${s_rates[@]}") invoices/s, p99 $(bench_stats "${s_p99[@]}") ms"
echo "cluster (2 workers):    $(bench_stats "${c_rates[@]}") invoices/s, p99 $(bench_stats "${c_p99[@]}") ms"
echo "ratio cluster / single: $(bench_stats "${ratios[@]}")"
for x in "${ratios[@]}"; do bench_figure "Citus: HTTP create on 2 workers / on one node (one machine)" "$x"; done
