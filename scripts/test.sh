#!/usr/bin/env bash
# README command 2: every test. Sets up what it needs first (idempotent), then runs
#   1. cargo test   — the pure domain crate (unit + property tests)
#   2. pg_regress   — the SQL API against the real extension (tests/sql, tests/expected)
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
#   8. worker       — rates from a local server in the real APIs' formats, expiry/overdue within
#                     a second, restart after SIGTERM and kill -9 (last: it crash-restarts the
#                     cluster)
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/env.sh"
bash "$here/setup.sh"
failed=()
step() { local name=$1; shift; log "test: $name"; if "$@"; then log "ok: $name"; else failed+=("$name"); log "FAILED: $name"; fi; }
step "cargo test (domain)" bash -c "set -o pipefail; cd '$ROOT' && cargo test -p invoices-domain --quiet 2>&1 | tail -n 25"
step "pg_regress (SQL API)" bash "$ROOT/tests/regress.sh"
step "package and upgrade" bash "$ROOT/tests/upgrade.sh"
for t in "$ROOT"/tests/concurrency/*.sh; do step "concurrency: $(basename "$t" .sh)" bash "$t"; done
bash "$ROOT/tests/http/install_clients.sh"
step "http: curl" bash "$ROOT/tests/http/curl.sh"
step "http: postgrest-js" bash -c "cd '$ROOT' && node --test tests/http/postgrest_js.test.mjs 2>&1 | tail -n 12; exit \${PIPESTATUS[0]}"
step "http: postgrest-py" bash -c "cd '$ROOT' && '$LOCAL_DIR/venv/bin/python' -m unittest tests/http/test_postgrest_py.py 2>&1 | tail -n 8; exit \${PIPESTATUS[0]}"
step "http: schemathesis fuzzing" bash "$ROOT/tests/http/fuzz.sh"
step "security: attacker" bash "$ROOT/tests/security/attacker.sh"
step "security: scopes under every spelling" bash "$ROOT/tests/security/scopes.sh"
step "security: public reads and anonymous limits" bash "$ROOT/tests/security/public_reads.sh"
step "security: non-UTF-8 headers refused by the web front" python3 "$ROOT/tests/security/headers.py" "$PUBLIC_PORT" "$PGRST_PORT"
step "scale-out: Citus rules" bash "$ROOT/tests/citus/catalog.sh"
step "webhooks: deliveries" bash "$ROOT/tests/webhooks/deliveries.sh"
step "webhooks: public destinations only" bash "$ROOT/tests/webhooks/destinations.sh"
step "documents: PDF and hosted page" bash "$ROOT/tests/documents/documents.sh"
step "documents: e-mail" bash "$ROOT/tests/documents/email.sh"
step "chains: EVM on Anvil" bash "$ROOT/tests/chains/evm.sh"
step "chains: EVM, no wrong credit" bash "$ROOT/tests/chains/evm_trust.sh"
step "chains: Bitcoin on bcoin" bash "$ROOT/tests/chains/bitcoin.sh"
step "chains: Bitcoin, zero-conf trust" bash "$ROOT/tests/chains/bitcoin_trust.sh"
step "chains: Kaspa on kaspad" bash "$ROOT/tests/chains/kaspa.sh"
step "webhooks: kill -9 mid-flush" bash "$ROOT/tests/webhooks/crash.sh"
step "crash: kill -9 under load" bash "$ROOT/tests/crash/under_load.sh"
step "worker: rates" bash "$ROOT/tests/worker/rates.sh"
step "worker: expiry" bash "$ROOT/tests/worker/expiry.sh"
step "worker: restart" bash "$ROOT/tests/worker/restart.sh"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
log "all tests passed"
