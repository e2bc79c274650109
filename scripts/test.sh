#!/usr/bin/env bash
# README command 2: every test. Sets up what it needs first (idempotent), then runs
#   1. cargo test   — the pure domain crate (unit + property tests)
#   2. pg_regress   — the SQL API against the real extension (tests/sql, tests/expected)
#   3. concurrency  — gapless numbering under 16 concurrent creators
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/env.sh"
bash "$here/setup.sh"
failed=()
step() { local name=$1; shift; log "test: $name"; if "$@"; then log "ok: $name"; else failed+=("$name"); log "FAILED: $name"; fi; }
step "cargo test (domain)" bash -c "set -o pipefail; cd '$ROOT' && cargo test -p invoices-domain --quiet 2>&1 | tail -n 25"
step "pg_regress (SQL API)" bash "$ROOT/tests/regress.sh"
for t in "$ROOT"/tests/concurrency/*.sh; do step "concurrency: $(basename "$t" .sh)" bash "$t"; done
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
log "all tests passed"
