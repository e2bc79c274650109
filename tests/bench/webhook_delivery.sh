#!/usr/bin/env bash
# Benchmark: the worker delivers 20,000 events (BENCH_EVENTS) to a loopback receiver that
# answers 200 at once (tests/stubs/counting_receiver.mjs, which also checks every
# X-Webhook-Signature with Node's crypto). The events are committed in transactions of 1,000
# by emit_events, the function every status change calls. Prints deliveries/s (from the first
# commit to the last receipt) and the p50/p99 latency from each event's commit to its first
# receipt. The limit of the same run is the receiver's own capacity, measured first with wrk
# (target: deliveries/s >= 0.7 of it). Then a steady load at half the burst's rate for 20 s
# (STEADY_SECONDS), a batch committed every 100 ms: target commit -> receipt p99 < 1 s.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/../../scripts/env.sh"
source "$here/lib.sh"
EVENTS="${BENCH_EVENTS:-20000}"
BATCH=1000
PORT="${BENCH_RECEIVER_PORT:-18950}"
work=$(mktemp -d)
node "$here/../stubs/counting_receiver.mjs" "$PORT" &
receiver=$!
# nothing left in the demo database afterwards (the worker, which the benchmark needs, runs there)
trap 'kill $receiver 2>/dev/null || true; bench_forget_merchant "Webhook bench"; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/stats" >/dev/null 2>&1 && break; sleep 0.1; done
wait_for_receipts() {  # N SECONDS: until the receiver has seen N distinct events
  local deadline=$(( $(date +%s) + $2 )) unique
  while :; do
    unique=$(curl -fs "http://127.0.0.1:$PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique"])')
    [ "$unique" -ge "$1" ] && return 0
    [ "$(date +%s)" -ge "$deadline" ] && { echo "only $unique of $1 events arrived within $2 s" >&2; exit 1; }
    sleep 0.2
  done
}

# The limit of the same run: the receiver's own capacity, measured with wrk posting bodies of a
# delivery's size (an invoice.viewed event, ~600 bytes) on 8 connections for 5 s; its counts are
# then forgotten.
command -v wrk >/dev/null || sudo_ apt-get install -y -qq wrk >/dev/null
pad=$(printf '%*s' 160 '' | tr ' ' x)
cat > "$work/capacity.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Webhook-Id"] = "capacity"
wrk.body = '{"id": "0190f3a2-7c1e-7000-8000-000000000000", "type": "invoice.viewed", "created_at": "2026-12-02T07:00:00Z", "data": {"id": "0190f3a2-7c1e-7000-8000-000000000001", "invoice_number": "INV-0001", "status": "pending", "currency": "USD", "total": "100.00", "amount_paid": "0.00", "asset": null, "asset_paid": "0", "address": null, "overpaid": false, "paid_late": false, "order_id": null, "metadata": {}}, "padding": "$pad"}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d\n", summary.requests, summary.duration))
end
LUA
capacity=$(wrk -t 2 -c 8 -d 5s -s "$work/capacity.lua" "http://127.0.0.1:$PORT/capacity" | awk '/^RESULT/ { printf "%d", $2 / ($3 / 1e6) }')
curl -fs "http://127.0.0.1:$PORT/reset" >/dev/null
echo "receiver capacity (wrk, 8 connections, 5 s): $capacity requests/s"

# a merchant whose invoice exists before its endpoint (so only the benchmark's events go out)
read -r mid inv < <(psql_ -tA -F ' ' <<'SQL'
select invoices.act_as((invoices.create_merchant('Webhook bench') ->> 'id')::uuid) is not null as acting \gset
select current_setting('invoices.merchant_id'),
       invoices.create_invoice(lines => '[{"description": "Bench", "unit_price": 1}]') ->> 'id';
SQL
)
secret=$(psql_ -tA -c "select invoices.act_as('$mid') is not null" \
  -c "select invoices.create_webhook_endpoint('http://127.0.0.1:$PORT/bench', '{invoice.viewed}') ->> 'secret'" | tail -1)
curl -fs "http://127.0.0.1:$PORT/secret?value=$secret" >/dev/null

echo "committing $EVENTS events in transactions of $BATCH"
batches=$(( (EVENTS + BATCH - 1) / BATCH ))
{
  for b in $(seq "$batches"); do
    cat <<SQL
begin;
select invoices_internal.emit_events(i, '{invoice.viewed}')
  from invoices_internal.invoices i, generate_series(1, $BATCH)
 where i.merchant_id = '$mid' and i.id = '$inv' \\g /dev/null
select $b, (extract(epoch from clock_timestamp()) * 1000)::bigint, (select max(id::text) from invoices_internal.events where merchant_id = '$mid');
commit;
SQL
  done
} | psql_ -tA -F ' ' > "$work/commits"

wait_for_receipts "$EVENTS" 180
curl -fs "http://127.0.0.1:$PORT/ids" > "$work/ids.json"
curl -fs "http://127.0.0.1:$PORT/stats" > "$work/stats.json"
psql_ -tA -F ' ' -c "select id, created_at from invoices_internal.events where merchant_id = '$mid' and event = 'invoice.viewed' order by id" \
  | awk '{print $1}' > "$work/events"
CAPACITY="$capacity" python3 - "$work" "$EVENTS" <<'PY'
import json, os, sys
# (the burst)
work, expected = sys.argv[1], int(sys.argv[2])
ids = json.load(open(f"{work}/ids.json"))
stats = json.load(open(f"{work}/stats.json"))
commits = [tuple(int(x) if i < 2 else x for i, x in enumerate(l.split())) for l in open(f"{work}/commits") if l.strip()]
events = [l.strip() for l in open(f"{work}/events") if l.strip()]
# events are UUIDv7 in commit order: the batch of an event is the first batch whose max id is >= it
bounds = [(c[2], c[1]) for c in commits]
lat, j = [], 0
for e in events:
    while bounds[j][0] < e:
        j += 1
    lat.append(ids[e] - bounds[j][1])
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
span = (stats["last_ms"] - commits[0][1]) / 1000
print(f"events committed:      {len(events)} in {(commits[-1][1] - commits[0][1]) / 1000:.2f} s")
print(f"deliveries received:   {stats['requests']} ({stats['unique']} unique, {stats['duplicates']} duplicates, "
      f"{stats['bad_signatures']} bad signatures)")
print(f"deliveries/s:          {len(events) / span:.0f}   (first commit -> last receipt {span:.2f} s)")
open(f"{work}/burst_rate", "w").write(f"{len(events) / span:.0f}")
print(f"commit -> receipt:     p50 {pct(0.50)} ms, p99 {pct(0.99)} ms, max {lat[-1]} ms")
capacity = int(os.environ.get("CAPACITY") or 0)
if capacity:
    print(f"deliveries/s / receiver capacity: {len(events) / span / capacity:.2f}   (target >= 0.7)")
import os
if os.environ.get("BENCH_FIGURES"):
    with open(os.environ["BENCH_FIGURES"], "a") as f:
        if capacity:   # (no figure when wrk could not measure the receiver)
            f.write(f"webhook deliveries/s / the receiver's capacity (wrk), burst of {expected}\t{len(events) / span / capacity:.3f}\t>= 0.7\n")
        f.write(f"webhook deliveries/s, burst of {expected} (absolute, this machine)\t{len(events) / span:.0f}\t\n")
        f.write(f"webhook commit -> receipt p50 (s), burst\t{pct(0.50) / 1000:.3f}\t\n")
        f.write(f"webhook commit -> receipt p99 (s), burst\t{pct(0.99) / 1000:.3f}\t\n")
if len(events) != expected or stats["bad_signatures"]:
    sys.exit("unexpected event count or bad signatures")
PY

# A steady load at half the burst's rate, for STEADY_SECONDS (20): a batch every 100 ms, each
# committed on its own; target: commit -> receipt p99 < 1 s.
STEADY_SECONDS="${STEADY_SECONDS:-20}"
per=$(( $(cat "$work/burst_rate") / 2 / 10 )); [ "$per" -ge 1 ] || per=1
batches=$(( STEADY_SECONDS * 10 ))
last=$(psql_ -tAc "select id from invoices_internal.events where merchant_id = '$mid' order by id desc limit 1")
echo "steady load: $((per * 10)) events/s (half the burst's rate) for ${STEADY_SECONDS} s"
psql_ -q <<SQL >/dev/null
create table bench_steady (b int, commit_ms bigint, max_id uuid);
do \$\$
declare
  t0 timestamptz;
  top uuid := '$last';
begin
  for b in 1 .. $batches loop
    t0 := clock_timestamp();
    perform invoices_internal.emit_events(i, '{invoice.viewed}')
       from invoices_internal.invoices i, generate_series(1, $per)
      where i.merchant_id = '$mid' and i.id = '$inv';
    top := (select id from invoices_internal.events where merchant_id = '$mid' and id > top order by id desc limit 1);
    insert into bench_steady values (b, (extract(epoch from clock_timestamp()) * 1000)::bigint, top);
    commit;
    perform pg_sleep(greatest(0, 0.1 - extract(epoch from clock_timestamp() - t0)));
  end loop;
end \$\$;
SQL
psql_ -tA -F ' ' -c "select b, commit_ms, max_id from bench_steady order by b" > "$work/steady_commits"
psql_ -qc "drop table bench_steady"
want=$(( EVENTS + per * batches ))
wait_for_receipts "$want" 120
curl -fs "http://127.0.0.1:$PORT/ids" > "$work/ids.json"
psql_ -tAc "select id from invoices_internal.events where merchant_id = '$mid' and event = 'invoice.viewed' and id > '$last' order by id" > "$work/steady_events"
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
ids = json.load(open(f"{work}/ids.json"))
commits = [l.split() for l in open(f"{work}/steady_commits") if l.strip()]
bounds = [(c[2], int(c[1])) for c in commits]
lat, j = [], 0
for e in (l.strip() for l in open(f"{work}/steady_events") if l.strip()):
    while bounds[j][0] < e:
        j += 1
    lat.append(ids[e] - bounds[j][1])
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print(f"steady: {len(lat)} events, commit -> receipt p50 {pct(0.5)} ms, p99 {pct(0.99)} ms (target p99 < 1 s)")
if os.environ.get("BENCH_FIGURES"):
    with open(os.environ["BENCH_FIGURES"], "a") as f:
        f.write(f"webhook commit -> receipt p99 (s), steady at half the burst rate\t{pct(0.99) / 1000:.3f}\t<= 1\n")
PY
