#!/usr/bin/env bash
# The `citus` step of README command 2: starts the Citus cluster (scripts/citus.sh: coordinator
# :5440, workers :5441 and :5442, PostgREST :3100), runs the suites against it with only the
# ports changed, and stops it. Without Citus and without its vendored source the step says so
# and is skipped (scripts/citus.sh prints how to install Citus).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"
bash "$ROOT/scripts/citus.sh" install
code=$?
if [ "$code" = 3 ]; then
  log "SKIPPED: the Citus suite (Citus is not installed here and cannot be built: see above)"
  exit 0
fi
[ "$code" = 0 ] || exit "$code"
bash "$ROOT/scripts/citus.sh" start || exit 1
trap 'bash "$ROOT/scripts/citus.sh" stop' EXIT
export PGPORT="${CITUS_COORDINATOR_PORT:-5440}" PGRST_PORT="${CITUS_PGRST_PORT:-3100}"
export PGRST_ADMIN_PORT=$((PGRST_PORT + 1)) PGRST_URL="http://127.0.0.1:$PGRST_PORT"
export PUBLIC_PORT="${CITUS_PUBLIC_PORT:-8180}"; export PUBLIC_URL="http://127.0.0.1:$PUBLIC_PORT"
# the suites that want a database of their own get a distributed one (tests/lib.sh fresh_database)
export CITUS=1
failed=()
suite() {  # NAME COMMAND...
  local name=$1; shift
  log "citus: $name"
  "$@" || failed+=("$name")
}
only="${CITUS_ONLY:-}"
want() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }
want cluster && suite "the cluster: distribution, tenancy, numbering, routing" bash "$here/cluster.sh"
want regress && suite "sql: the pg_regress suite" bash "$here/regress.sh"
want curl && suite "http: curl" bash "$ROOT/tests/http/curl.sh"
want js && suite "http: postgrest-js" bash -c "cd '$ROOT' && node --test tests/http/postgrest_js.test.mjs 2>&1 | tail -n 12; exit \${PIPESTATUS[0]}"
want seeds && suite "seeds: Living Invoices and BTPay, /api/v1" bash "$ROOT/tests/seeds/v1.sh"
want seeds && suite "seeds: BTPay's links, rates and webhooks" bash "$ROOT/tests/seeds/btpay.sh"
want seeds && suite "seeds: Kibble and apiforcrypto" bash "$ROOT/tests/seeds/kibble_apiforcrypto.sh"
want security && suite "security: attacker" bash "$ROOT/tests/security/attacker.sh"
want security && suite "security: scopes under every spelling" bash "$ROOT/tests/security/scopes.sh"
want security && suite "security: public reads and anonymous limits" bash "$ROOT/tests/security/public_reads.sh"
want security && suite "security: non-UTF-8 headers" python3 "$ROOT/tests/security/headers.py" "$PUBLIC_PORT" "$PGRST_PORT"
want webhooks && suite "webhooks: deliveries" bash "$ROOT/tests/webhooks/deliveries.sh"
want races && suite "concurrency: gapless numbering, 16 creators" bash "$ROOT/tests/concurrency/numbering.sh"
want races && suite "concurrency: the carousel, 64 clients" bash "$ROOT/tests/concurrency/carousel.sh"
want chains && suite "chains: EVM on Anvil" bash "$ROOT/tests/chains/evm.sh"
want rebalance && suite "rebalance under load" bash "$here/rebalance.sh"
want kill && suite "a worker node killed under load" bash "$here/worker_kill.sh"
want migrate && suite "moving from one node: distributed in place" bash "$here/migrate.sh"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED on Citus: %s\n' "${failed[@]}" >&2
  exit 1
fi
