#!/usr/bin/env bash
# README command 2: every test. Sets up what it needs first (idempotent), then runs
#   1. cargo test   — the pure domain crate (unit + property tests)
#   2. pg_regress   — the SQL API against the real extension (tests/sql, tests/expected),
#                     and pg_isolation_regress (tests/isolation: interleavings of two sessions)
#   3. concurrency  — gapless numbering under 16 concurrent creators, the carousel under 64,
#                     and 64 clients racing create/finalize/cancel/expire with real payments
#   4. HTTP         — end-to-end through the running PostgREST with curl, postgrest-js and
#                     postgrest-py (clients installed into .local/ by tests/http/install_clients.sh)
#   5. webhooks     — outbox to a real receiver, both signatures, retries, dead letter, redeliver;
#                     kill -9 of the postmaster during a 10,000-event flush (at least once)
#   6. documents    — the invoice PDF (text, pages, QR codes read back), the hosted page in headless
#                     Chromium (countdown, polling, redirects, invoice.viewed), e-mail through a
#                     real SMTP server (aiosmtpd) with retries and dead letters
#   7. chains       — payment detection on a real Anvil (ETH + an ERC-20), a real Bitcoin
#                     full node (bcoin, regtest) and a real kaspad (simnet; built from crates.io
#                     once, 20-35 min): exact, partial, over, late, confirmations, garbage
#                     answers, reorg, node restart
#   citus           — the suites again on a real Citus cluster (scripts/citus.sh: a coordinator and
#                     two workers), rebalancing under load, a worker node killed, moving from one node
#   8. worker       — rates from a local server in the real APIs' formats, expiry/overdue within
#                     a second, restart after SIGTERM and kill -9 (last: it crash-restarts the
#                     cluster)
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/test.sh [--fast] [--only GROUP|FILE|NAME]...
  (no option)  every test: README command 2
  --fast       the edit-test loop: cargo, pg_regress and the isolation tests (a few minutes)
  --only X     only the tests of group X (domain, sql, upgrade, docs, concurrency, http, seeds, security, scale-out, citus,
               webhooks, documents, chains, crash, worker), of test file X
               (e.g. tests/chains/evm.sh), or whose name contains X; may be repeated
  --list       print the groups and test names, run nothing
USAGE
}
fast=false; list=false; only=()
while [ $# -gt 0 ]; do
  case $1 in
    --fast) fast=true ;;
    --only) [ $# -ge 2 ] || { usage >&2; exit 2; }; only+=("$2"); shift ;;
    --only=*) only+=("${1#--only=}") ;;
    --list) list=true ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/env.sh"
failed=(); ran=0
# selected GROUP NAME COMMAND...: is this test asked for?
selected() {
  local group=$1 name=$2 o a; shift 2
  if $fast && [[ ! " domain sql " == *" $group "* ]]; then return 1; fi
  [ ${#only[@]} -eq 0 ] && return 0
  for o in "${only[@]}"; do
    [ "$o" = "$group" ] && return 0
    [[ "$name" == *"$o"* ]] && return 0
    if [ -e "$o" ]; then
      for a in "$@"; do [ -e "$a" ] && [ "$(realpath "$a")" = "$(realpath "$o")" ] && return 0; done
    fi
  done
  return 1
}
# step GROUP NAME COMMAND...: runs one test (when selected) and records its outcome
step() {
  local group=$1 name=$2; shift 2
  selected "$group" "$name" "$@" || return 0
  if $list; then printf '%-12s %s\n' "$group" "$name"; return 0; fi
  ran=$((ran + 1))
  log "test: $name"
  if "$@"; then log "ok: $name"; else failed+=("$name"); log "FAILED: $name"; fi
}
$list || bash "$here/setup.sh"
clients() { bash "$ROOT/tests/http/install_clients.sh" && "$@"; }
step domain "cargo test (domain)" bash -c "set -o pipefail; cd '$ROOT' && cargo test -p invoices-domain --quiet 2>&1 | tail -n 25"
step sql "pg_regress (SQL API)" bash "$ROOT/tests/regress.sh"
step sql "isolation (two sessions interleaved)" bash "$ROOT/tests/isolation.sh"
step upgrade "package and upgrade" bash "$ROOT/tests/upgrade.sh"
step docs "docs: SQL reference matches the catalog" bash "$ROOT/tests/docs.sh"
for t in "$ROOT"/tests/concurrency/*.sh; do step concurrency "concurrency: $(basename "$t" .sh)" bash "$t"; done
step http "http: curl" clients bash "$ROOT/tests/http/curl.sh"
step http "http: postgrest-js" clients bash -c "cd '$ROOT' && node --test tests/http/postgrest_js.test.mjs 2>&1 | tail -n 12; exit \${PIPESTATUS[0]}" "$ROOT/tests/http/postgrest_js.test.mjs"
step http "http: postgrest-py" clients bash -c "cd '$ROOT' && '$LOCAL_DIR/venv/bin/python' -m unittest tests/http/test_postgrest_py.py 2>&1 | tail -n 8; exit \${PIPESTATUS[0]}" "$ROOT/tests/http/test_postgrest_py.py"
step http "http: schemathesis fuzzing" clients bash "$ROOT/tests/http/fuzz.sh"
step seeds "seeds: Living Invoices and BTPay, /api/v1" bash "$ROOT/tests/seeds/v1.sh"
step seeds "seeds: BTPay's links, rates and webhooks; the webhook formats" bash "$ROOT/tests/seeds/btpay.sh"
step seeds "seeds: Kibble and apiforcrypto" bash "$ROOT/tests/seeds/kibble_apiforcrypto.sh"
step security "security: attacker" bash "$ROOT/tests/security/attacker.sh"
step security "security: scopes under every spelling" bash "$ROOT/tests/security/scopes.sh"
step security "security: public reads and anonymous limits" bash "$ROOT/tests/security/public_reads.sh"
step security "security: non-UTF-8 headers refused by the web front" python3 "$ROOT/tests/security/headers.py" "$PUBLIC_PORT" "$PGRST_PORT"
step scale-out "scale-out: Citus rules" bash "$ROOT/tests/citus/catalog.sh"
step citus "citus: the suites on a real cluster (coordinator and two workers)" clients bash "$ROOT/tests/citus/run.sh"
step webhooks "webhooks: deliveries" bash "$ROOT/tests/webhooks/deliveries.sh"
step webhooks "webhooks: public destinations only" bash "$ROOT/tests/webhooks/destinations.sh"
step documents "documents: PDF and hosted page" bash "$ROOT/tests/documents/documents.sh"
step documents "documents: e-mail" bash "$ROOT/tests/documents/email.sh"
step documents "documents: e-mail over TLS" bash "$ROOT/tests/documents/email_tls.sh"
step documents "documents: reminder e-mails across a stopped worker" bash "$ROOT/tests/documents/reminders.sh"
step documents "documents: the pay button in Chromium" bash "$ROOT/tests/widget/widget.sh"
step documents "documents: the pay button paid on Anvil" bash "$ROOT/tests/widget/anvil.sh"
step chains "chains: EVM on Anvil" bash "$ROOT/tests/chains/evm.sh"
step chains "chains: EVM, no wrong credit" bash "$ROOT/tests/chains/evm_trust.sh"
step chains "chains: Bitcoin on bcoin" bash "$ROOT/tests/chains/bitcoin.sh"
step chains "chains: Bitcoin, zero-conf trust" bash "$ROOT/tests/chains/bitcoin_trust.sh"
step chains "chains: Kaspa on kaspad" bash "$ROOT/tests/chains/kaspa.sh"
step crash "webhooks: kill -9 mid-flush" bash "$ROOT/tests/webhooks/crash.sh"
step crash "crash: kill -9 under load" bash "$ROOT/tests/crash/under_load.sh"
step worker "worker: rates" bash "$ROOT/tests/worker/rates.sh"
step worker "worker: expiry" bash "$ROOT/tests/worker/expiry.sh"
step worker "worker: restart" bash "$ROOT/tests/worker/restart.sh"
step worker "worker: recurring invoices across kill -9" bash "$ROOT/tests/worker/schedules.sh"
$list && exit 0
if [ "$ran" -eq 0 ]; then
  die "no test matches: ${only[*]} (scripts/test.sh --list shows them)"
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
log "all $ran tests passed"
