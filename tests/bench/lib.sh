# Helpers of the benchmarks (sourced): a database and a PostgREST of their own, so a benchmark
# leaves nothing in the demo database and waits behind nothing another run left there.

# bench_postgrest NAME DB_PORT DB API_PORT: starts PostgREST for database DB of the server on
# DB_PORT, on 127.0.0.1:API_PORT (admin port API_PORT + 1), configured as the project's own
# (scripts/setup.sh); bench_postgrest_stop NAME stops it. Its files are in $LOCAL_DIR/bench/NAME.
bench_postgrest() {
  local name=$1 db_port=$2 db=$3 api_port=$4 dir="$LOCAL_DIR/bench/$1"
  mkdir -p "$dir"
  cat > "$dir/postgrest.conf" <<CONF
db-uri = "postgres://invoices_authenticator@127.0.0.1:$db_port/$db"
db-pre-config = "invoices_internal.postgrest_config"
db-pool = 10
server-host = "127.0.0.1"
server-port = $api_port
admin-server-port = $((api_port + 1))
log-level = "error"
CONF
  bench_postgrest_stop "$name"
  setsid nohup "$PGRST_BIN" "$dir/postgrest.conf" >"$dir/postgrest.log" 2>&1 < /dev/null &
  echo $! > "$dir/postgrest.pid"
  local i
  for i in $(seq 100); do
    curl -fs "http://127.0.0.1:$((api_port + 1))/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "PostgREST for $db on :$db_port did not become ready (log: $dir/postgrest.log)" >&2
  return 1
}
bench_postgrest_stop() {
  local pid; pid=$(cat "$LOCAL_DIR/bench/$1/postgrest.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
  rm -f "$LOCAL_DIR/bench/$1/postgrest.pid"
}

# bench_stats VALUE...: "median (min MIN, max MAX)"
bench_stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%s (min %s, max %s)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }

# bench_figure NAME VALUE [TARGET]: one figure of this run for scripts/bench.sh, which names
# the file it collects in BENCH_FIGURES (unset: nothing is written). TARGET is ">= 0.8",
# "<= 3", "all >= 0.9" (every run must meet it, not only the median), or empty (reported only).
bench_figure() {
  [ -n "${BENCH_FIGURES:-}" ] && printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >> "$BENCH_FIGURES"
  return 0
}

# bench_forget_merchant NAME: removes a benchmark's merchant and every row that names it from
# the demo database (the benchmarks that need the worker work there), triggers off: invoices,
# audit rows and events are never deleted by the product itself.
bench_forget_merchant() {
  psql_ -q -v name="$1" >/dev/null 2>&1 <<'SQL' || true
set session_replication_role = replica;
select set_config('bench.forget', :'name', false);
do $$
declare
  t text;
  ids uuid[] := array(select id from invoices_internal.merchants where name = current_setting('bench.forget'));
begin
  if cardinality(ids) = 0 then return; end if;
  for t in select c.relname from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'merchant_id'
            where c.relnamespace = 'invoices_internal'::regnamespace and c.relkind = 'r' and c.relname <> 'merchants' loop
    execute format('delete from invoices_internal.%I where merchant_id = any ($1)', t) using ids;
  end loop;
  delete from invoices_internal.merchants where id = any (ids);
end $$;
SQL
}
# bench_forget_chain ID: removes a benchmark's chain (its blocks go with it) and, once the
# worker has let it go, its task row.
bench_forget_chain() {
  psql_ -qc "delete from invoices_internal.chains where id = '$1'" >/dev/null 2>&1 || true
  sleep 2
  psql_ -qc "delete from invoices_internal.worker_tasks where task = 'chain $1'" >/dev/null 2>&1 || true
}

# bench_create_lua KEYS_FILE: a wrk script that posts create_invoice (3 lines, send: true) with
# the keys of KEYS_FILE (one per line) in turn, and prints
# "RESULT requests duration_us p50_ms p99_ms mean_ms non2xx" when done.
BENCH_CREATE_BODY='{"lines": [{"description": "Consulting", "quantity": 2, "unit_price": "150.00"}, {"description": "Hosting", "quantity": 1, "unit_price": "19.99"}, {"description": "Setup", "quantity": 3, "unit_price": "33.33"}], "customer_email": "alice@example.com", "tax_rate": 10, "send": true}'
bench_create_lua() {
  echo "local keys = {"; sed 's/.*/  "&",/' "$1"; echo "}"
  cat <<LUA
local i = 0
wrk.method = "POST"
wrk.body = '$BENCH_CREATE_BODY'
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  wrk.headers["X-API-Key"] = keys[(i % #keys) + 1]
  return wrk.format(nil, "/rpc/create_invoice")
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000, summary.errors.status))
end
LUA
}
