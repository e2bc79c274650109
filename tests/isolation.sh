#!/usr/bin/env bash
# Runs the isolation specs (tests/isolation/specs/*.spec against tests/isolation/expected/*.out)
# with PostgreSQL's own pg_isolation_regress on the project's cluster, in a database of its own
# (invoices_isolation) that the tool recreates on every run. Each spec forces interleavings of
# concurrent sessions (a step waits on another's lock, then goes on) that load tests only hit
# by chance. Usage: tests/isolation.sh [spec ...] (default: every spec).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
PG_ISOLATION_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress"
[ -x "$PG_ISOLATION_REGRESS" ] || die "no $PG_ISOLATION_REGRESS (package postgresql-server-dev-15)"
out="$LOCAL_DIR/isolation"
rm -rf "$out"; mkdir -p "$out"
[ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$out"
if [ $# -gt 0 ]; then
  specs="$*"
else
  specs=$(cd "$ROOT/tests/isolation/specs" && ls ./*.spec | sed 's|^\./||; s|\.spec$||' | sort)
fi
# pg_isolation_regress runs as the cluster owner (its output files belong with the cluster's
# user); it finds isolationtester next to itself. --load-extension installs the extension in
# the fresh database; each spec's setup then recreates it so every permutation starts clean.
if as_owner "$PG_ISOLATION_REGRESS" --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
     --dbname=invoices_isolation --load-extension=invoices \
     --inputdir="$ROOT/tests/isolation" --outputdir="$out" $specs; then
  exit 0
fi
[ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"
exit 1
