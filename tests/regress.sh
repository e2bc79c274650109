#!/usr/bin/env bash
# Runs the pg_regress suite (tests/sql + tests/expected) against the project's cluster, in a
# database of its own that pg_regress recreates on every run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
PG_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
out="$LOCAL_DIR/regress"
rm -rf "$out"; mkdir -p "$out"
[ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$out"
tests=$(cd "$ROOT/tests/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
# pg_regress runs as the cluster owner (it refuses nothing as root, but its output files
# belong with the cluster's user).
if as_owner "$PG_REGRESS" --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
     --dbname=invoices_regress --inputdir="$ROOT/tests" --outputdir="$out" $tests; then
  exit 0
fi
[ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"
exit 1
