#!/usr/bin/env bash
# The generated SQL reference matches the catalog: docs/sql-reference.md is what
# scripts/sql_reference.sh writes from a fresh CREATE EXTENSION (a COMMENT ON changed in sql/
# without regenerating it fails here, with the diff). Prints one line: ok or FAIL.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if out=$(bash "$root/scripts/sql_reference.sh" --check 2>&1); then
  printf '  ok   docs/sql-reference.md matches the catalog of a fresh CREATE EXTENSION\n'
else
  printf '%s\n' "$out" | head -200
  printf '  FAIL docs/sql-reference.md has drifted: run bash scripts/sql_reference.sh\n'
  exit 1
fi
