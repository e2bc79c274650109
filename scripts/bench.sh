#!/usr/bin/env bash
# The benchmarks (tests/bench/), each run BENCH_RUNS (3) times, as one Markdown table: every
# figure's median, min and max over the runs, its target and whether the median meets it (for
# "all" targets: every run). The table goes to stdout and, with the machine it came from, to
# .local/bench.md. Not a test: command 2 never runs it. Each benchmark makes its own database
# (and PostgREST where it needs one) and drops it afterwards.
#   bash scripts/bench.sh                 every benchmark
#   bash scripts/bench.sh create http     some of them: create http webhooks addresses chain memory citus citus_http growth
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS="${BENCH_RUNS:-3}"
declare -A SCRIPT=([create]=create_invoice.sh [http]=http_create_invoice.sh [webhooks]=webhook_delivery.sh
                   [addresses]=address_allocation.sh [chain]=chain_detection.sh [citus]=citus.sh
                   [citus_http]=citus_http.sh [growth]=growth.sh [memory]=worker_memory.sh)
ORDER=(create http webhooks addresses chain memory citus citus_http growth)
# these repeat themselves (their runs share a costly set-up: a cluster, 10M rows): called once
SELF_REPEATING=" citus citus_http growth "
names=("$@"); [ ${#names[@]} -gt 0 ] || names=("${ORDER[@]}")
for n in "${names[@]}"; do [ -n "${SCRIPT[$n]:-}" ] || die "unknown benchmark '$n' (one of: ${ORDER[*]})"; done
bash "$ROOT/scripts/setup.sh" >/dev/null 2>&1 || bash "$ROOT/scripts/setup.sh"
mkdir -p "$LOCAL_DIR/bench"
figures="$LOCAL_DIR/bench/figures.tsv"; : > "$figures"
for n in "${names[@]}"; do
  calls=$RUNS each=1
  if [[ "$SELF_REPEATING" == *" $n "* ]]; then calls=1 each=$RUNS; fi
  for r in $(seq "$calls"); do
    log "benchmark $n, call $r of $calls ($each run(s) each)"
    if ! BENCH_FIGURES="$figures.$n.$r" BENCH_RUNS=$each bash "$ROOT/tests/bench/${SCRIPT[$n]}" > "$LOCAL_DIR/bench/$n.$r.log" 2>&1; then
      echo "benchmark $n run $r failed (log: $LOCAL_DIR/bench/$n.$r.log)" >&2; tail -5 "$LOCAL_DIR/bench/$n.$r.log" >&2
    fi
    [ -f "$figures.$n.$r" ] && sed "s/^/$r\t/" "$figures.$n.$r" >> "$figures" && rm -f "$figures.$n.$r"
  done
done
machine=$(printf '%s, %s cores, %s memory, PostgreSQL %s, %s' \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(free -h | awk '/^Mem:/ {print $2}')" \
  "$("$PG_BIN/postgres" --version | awk '{print $3}')" "$(date -u +%Y-%m-%d)")
python3 - "$figures" "$RUNS" "$machine" > "$LOCAL_DIR/bench.md" <<'PY'
import sys, collections
path, runs, machine = sys.argv[1], int(sys.argv[2]), sys.argv[3]
by = collections.OrderedDict()
for line in open(path):
    run, name, value, target = (line.rstrip("\n").split("\t") + [""])[:4]
    by.setdefault(name, {"target": target, "values": []})["values"].append(float(value))
def meets(v, op, limit):
    return v >= limit if op == ">=" else v <= limit
print(f"Benchmarks, {runs} runs each: {machine}\n")
print("| figure | median | min | max | target | met |")
print("|---|---|---|---|---|---|")
for name, f in by.items():
    v = sorted(f["values"]); med = v[(len(v) - 1) // 2]
    t = f["target"].split()
    if not t:
        met = "—"
    elif t[0] == "all":
        met = "yes" if all(meets(x, t[1], float(t[2])) for x in v) and len(v) == runs else "no"
    else:
        met = "yes" if meets(med, t[0], float(t[1])) and len(v) == runs else "no"
    fmt = lambda x: f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"
    print(f"| {name} | {fmt(med)} | {fmt(v[0])} | {fmt(v[-1])} | {f['target'] or '—'} | {met} |")
PY
cat "$LOCAL_DIR/bench.md"
