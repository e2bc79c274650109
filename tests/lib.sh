# The shell suites' one assertion helper and output format. Source it first: it brings
# scripts/env.sh. Every check prints one line, "  ok   <what>" or "  FAIL <what>" with the
# detail under it, and `finish` prints "<n> passed, <m> failed" and fails when any failed;
# the Python suites (tests/security/*.py) print the same lines.
# shellcheck shell=bash
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
pass=0; fail=0
ok()  { pass=$((pass + 1)); printf '  ok   %s\n' "$1"; }
bad() { fail=$((fail + 1)); printf '  FAIL %s\n' "$1"; [ -n "${2:-}" ] && printf '       %s\n' "$2"; return 0; }
section() { printf '%s\n' "$*"; }
# check NAME COMMAND...: ok when the command succeeds
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
expect_eq() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got [$2], expected [$3]"; fi; }
q() { psql_ -tA -c "$1"; }
# wait_for SECONDS SQL: polls until SQL returns t; returns 1 on timeout
wait_for() {
  local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$deadline" ]; do
    [ "$(q "$2" 2>/dev/null)" = t ] && return 0
    sleep 0.05
  done
  return 1
}
# alter_system "set <setting> = <value>" | "reset <setting>": ALTER SYSTEM and reload, on this
# server and, on a Citus coordinator, on every worker node too (triggers run on the shards'
# nodes and read their settings there)
alter_system() {
  psql_ -qc "alter system $1" -c "select pg_reload_conf()" >/dev/null
  if [ "$(q "select count(*) from pg_extension where extname = 'citus'" 2>/dev/null)" = 1 ]; then
    q "select run_command_on_workers(\$\$alter system $1\$\$), run_command_on_workers('select pg_reload_conf()')" >/dev/null
  fi
}
# fresh_database NAME: database NAME, new, with the extension; on Citus (CITUS=1, set by
# tests/citus/run.sh) on every node and distributed. drop_database NAME removes it.
fresh_database() {
  if [ -n "${CITUS:-}" ]; then bash "$ROOT/scripts/citus.sh" database "$1"; return; fi
  psql_ -d postgres -c "drop database if exists $1" -c "create database $1" >/dev/null
  psql_ -d "$1" -c "create extension invoices" >/dev/null
}
drop_database() {
  if [ -n "${CITUS:-}" ]; then bash "$ROOT/scripts/citus.sh" drop-database "$1"; return; fi
  psql_ -d postgres -c "drop database $1" >/dev/null
}
worker_pid() { q "select pid from pg_stat_activity where backend_type = 'invoices worker'" 2>/dev/null || true; }
finish() { printf '%d passed, %d failed\n' "$pass" "$fail"; [ "$fail" -eq 0 ]; }
