#!/usr/bin/env bash
# The pg_regress suite (tests/sql and tests/expected, the single node's files) on the Citus
# cluster. pg_regress cannot create a distributed database, so the database is prepared first
# (Citus and its nodes: scripts/citus.sh database NAME --bare, with the settings pg_regress gives
# a database it creates, on every node), 00_setup installs the extension as on one node, the
# database is distributed (invoices.distribute_on_citus()), and the other files run against it.
#
# What a cluster answers differently by its nature is tests/citus/regress.patch, applied to
# the expected files before they are compared; the results are compared after replacing what
# changes from run to run (temporary schema numbers, shard ids, worker ports):
#   02  an error raised at COMMIT on a worker comes back as a WARNING and Citus's own ERROR;
#   04  a role granted only a view is refused on the shards (Citus runs the shard query as the
#       caller) rather than shown 0 rows, and GRANT on the extension's schema is not passed to
#       the workers (Citus propagates no extension-owned object);
#   05, 10  a function in pg_temp is created on the coordinator only (Citus says so);
#   07  a constraint's name carries its shard's id.
# Everything else must read exactly as on one node.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
PG_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
port="${CITUS_COORDINATOR_PORT:-5440}" db=invoices_regress
workers="${CITUS_WORKER_PORTS:-5441 5442}"
out="$LOCAL_DIR/citus-regress"
rm -rf "$out"; mkdir -p "$out"
[ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$out"
bash "$ROOT/scripts/citus.sh" database "$db" --bare || exit 1
trap 'bash "$ROOT/scripts/citus.sh" drop-database "$db" >/dev/null 2>&1' EXIT
# what pg_regress does to a database it creates, and its session settings (PGTZ, PGDATESTYLE,
# intervalstyle), on every node: a worker evaluates what runs there (current_date in a pushed-down
# filter, a trigger's output) in its own database's settings, not the coordinator session's
for p in $port $workers; do
  psql -X -q -h 127.0.0.1 -p "$p" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "alter database $db set lc_messages to 'C'" -c "alter database $db set lc_monetary to 'C'" \
    -c "alter database $db set lc_numeric to 'C'" -c "alter database $db set lc_time to 'C'" \
    -c "alter database $db set bytea_output to 'hex'" -c "alter database $db set timezone_abbreviations to 'Default'" \
    -c "alter database $db set timezone to 'PST8PDT'" -c "alter database $db set datestyle to 'Postgres, MDY'" \
    -c "alter database $db set intervalstyle to 'postgres_verbose'" >/dev/null || exit 1
done
regress() {
  as_owner "$PG_REGRESS" --bindir="$PG_BIN" --host=127.0.0.1 --port="$port" --user=postgres \
    --use-existing --dbname="$db" --inputdir="$ROOT/tests" --outputdir="$out" "$@" >/dev/null 2>&1
}
tests=$(cd "$ROOT/tests/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
regress 00_setup
if ! PGOPTIONS="-c client_min_messages=warning" psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$db" \
       -v ON_ERROR_STOP=1 -c "select invoices.distribute_on_citus()" >/dev/null; then
  echo "not ok: the regression database could not be distributed" >&2; exit 1
fi
regress $(echo "$tests" | grep -v '^00_setup$')   # (its verdict is not the cluster's: compared below)
mkdir -p "$out/expected" "$out/compared"
cp "$ROOT"/tests/expected/*.out "$out/expected/"
if ! patch -s -p1 -d "$out/expected" < "$ROOT/tests/citus/regress.patch"; then
  echo "not ok: tests/citus/regress.patch no longer applies to tests/expected (update it)" >&2; exit 1
fi
normalize() {
  sed -E 's/pg_temp_[0-9]+/pg_temp_N/g; s/_1[0-9]{5}\b/_SHARD/g; s/shard 1[0-9]{5}/shard N/g;
          s/127\.0\.0\.1:54[0-9]{2}\b/127.0.0.1:PORT/g' "$1"
}
pass=0 fail=0
for t in $tests; do
  if [ ! -f "$out/results/$t.out" ]; then
    echo "not ok - $t: no result"; fail=$((fail + 1)); continue
  fi
  normalize "$out/results/$t.out" > "$out/compared/$t.out"
  if diff -u "$out/expected/$t.out" "$out/compared/$t.out" > "$out/compared/$t.diff"; then
    echo "ok - $t"; pass=$((pass + 1)); rm -f "$out/compared/$t.diff"
  else
    echo "not ok - $t (on Citus)"; head -60 "$out/compared/$t.diff"; fail=$((fail + 1))
  fi
done
printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
