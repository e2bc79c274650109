#!/usr/bin/env bash
# A Citus cluster on this machine, for scaling out and for the tests' `citus` step:
#   bash scripts/citus.sh start    coordinator 127.0.0.1:5440, workers :5441 and :5442, each with
#                                  database `invoices`; Citus and the extension installed, the
#                                  workers added, invoices.distribute_on_citus() applied, and
#                                  PostgREST on 127.0.0.1:3100 in front of the coordinator, and
#                                  its web front (nginx) on 127.0.0.1:8180
#   bash scripts/citus.sh stop     stops all of it
#   bash scripts/citus.sh status   which node holds how many shards
#   bash scripts/citus.sh install  only installs Citus (exit 3: not possible here)
# Idempotent like setup.sh. The coordinator runs the invoices background worker; the workers
# only hold shards (invoices.background_worker = off). Citus itself comes from its Debian or RPM
# packages when present, else it is built once from the vendored source (../shared/vendor) and
# the build kept in ${XDG_CACHE_HOME:-~/.cache}/invoices/citus-<version>.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CITUS_VERSION="13.2.2"
CITUS_VENDOR_DIR="${CITUS_VENDOR_DIR:-$ROOT/../shared/vendor}"
CITUS_CACHE="$INVOICES_CACHE_DIR/citus-$CITUS_VERSION"
CITUS_DIR="$LOCAL_DIR/citus"
CITUS_COORDINATOR_PORT="${CITUS_COORDINATOR_PORT:-5440}"
CITUS_WORKER_PORTS="${CITUS_WORKER_PORTS:-5441 5442}"
CITUS_PGRST_PORT="${CITUS_PGRST_PORT:-3100}"
CITUS_PGRST_ADMIN_PORT="${CITUS_PGRST_ADMIN_PORT:-$((CITUS_PGRST_PORT + 1))}"
CITUS_PUBLIC_PORT="${CITUS_PUBLIC_PORT:-8180}"

# install: citus.so present, or built from the vendored source; exit 3 when neither is possible
install_citus() {
  local libdir; libdir="$("$PG_CONFIG" --pkglibdir)"
  [ -f "$libdir/citus.so" ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/citus.control" ] && return 0
  local tarball="$CITUS_VENDOR_DIR/citus-$CITUS_VERSION.tar.gz"
  if [ ! -f "$tarball" ]; then
    cat >&2 <<MSG
Citus is not installed and its source is not here ($tarball).
Install Citus $CITUS_VERSION for PostgreSQL 15 from its official packages, then run this again:
  curl https://install.citusdata.com/community/deb.sh | sudo bash
  sudo apt-get install -y postgresql-15-citus-13.2
(RPM: https://docs.citusdata.com/en/stable/installation/multi_node_rhel.html)
MSG
    return 3
  fi
  local p missing=()
  for p in libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages for Citus: ${missing[*]}"
    sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -f "$CITUS_CACHE/.built" ]; then
    log "building Citus $CITUS_VERSION from $tarball (about 3 minutes, once)"
    rm -rf "$CITUS_CACHE"; mkdir -p "$INVOICES_CACHE_DIR"
    tar -xzf "$tarball" -C "$INVOICES_CACHE_DIR"
    [ -d "$CITUS_CACHE" ] || die "the tarball did not hold citus-$CITUS_VERSION/"
    for p in "$CITUS_VENDOR_DIR"/citus-"$CITUS_VERSION"-*.patch; do
      [ -f "$p" ] && (cd "$CITUS_CACHE" && patch -s -p1 < "$p")
    done
    (cd "$CITUS_CACHE" && ./configure PG_CONFIG="$PG_CONFIG" >"$CITUS_CACHE/configure.log" 2>&1 \
       && make -j"$(nproc)" >"$CITUS_CACHE/make.log" 2>&1) \
      || { tail -30 "$CITUS_CACHE/make.log" "$CITUS_CACHE/configure.log" 2>/dev/null >&2; die "building Citus failed (logs in $CITUS_CACHE)"; }
    touch "$CITUS_CACHE/.built"
  fi
  log "installing Citus $CITUS_VERSION into PostgreSQL"
  (cd "$CITUS_CACHE" && sudo_ make install >"$CITUS_CACHE/install.log" 2>&1) \
    || die "installing Citus failed (log: $CITUS_CACHE/install.log)"
}

node_dir() { echo "$CITUS_DIR/node-$1"; }
all_ports() { echo "$CITUS_COORDINATOR_PORT $CITUS_WORKER_PORTS"; }
psql_at() { local port=$1; shift; psql_ -h 127.0.0.1 -p "$port" -U postgres "$@"; }
node_running() { as_owner "$PG_BIN/pg_ctl" -D "$(node_dir "$1")" status >/dev/null 2>&1; }

start_node() {
  local port=$1 worker=$2 dir; dir="$(node_dir "$port")"
  mkdir -p "$CITUS_DIR/run" "$CITUS_DIR/log"
  [ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$CITUS_DIR" "$CITUS_DIR/run" "$CITUS_DIR/log"
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown "$CLUSTER_OWNER" "$dir"
    as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$dir/postgresql.conf" <<CONF

# --- invoices on Citus (written by scripts/citus.sh) ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$CITUS_DIR/run'
shared_preload_libraries = 'citus,invoices'
invoices.database = 'invoices'
# the coordinator sweeps, polls chains and delivers; the workers only hold shards
invoices.background_worker = $( [ "$worker" = yes ] && echo off || echo on )
# the status machine, audit and append-only triggers run on the shards
citus.enable_unsafe_triggers = on
# shards per distributed table: 8 on this one machine (32, Citus' default, for real nodes)
citus.shard_count = ${CITUS_SHARD_COUNT:-8}
# the merchant of a request (SET LOCAL invoices.merchant_id) reaches every node it touches
citus.propagate_set_commands = 'local'
# multi-shard writes commit with two-phase commit; shard moves use logical replication
max_prepared_transactions = 200
wal_level = logical
max_connections = 200
max_worker_processes = 16
shared_buffers = 128MB
CONF
    cat > "$dir/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 trust
HBA
  fi
  if ! node_running "$port"; then
    log "starting Citus node on 127.0.0.1:$port ($( [ "$worker" = yes ] && echo worker || echo coordinator ))"
    as_owner "$PG_BIN/pg_ctl" -D "$dir" -w -t 60 start -l "$CITUS_DIR/log/node-$port.log" >/dev/null \
      || die "the node on :$port did not start (log: $CITUS_DIR/log/node-$port.log)"
  fi
  if ! psql_at "$port" -d postgres -tAc "select 1 from pg_database where datname = 'invoices'" | grep -q 1; then
    psql_at "$port" -d postgres -c "create database invoices"
  fi
  psql_at "$port" -d invoices -tAc "select 1 from pg_extension where extname = 'citus'" | grep -q 1 \
    || psql_at "$port" -d invoices -c "create extension citus" >/dev/null
}

start() {
  install_citus
  local port
  start_node "$CITUS_COORDINATOR_PORT" no
  for port in $CITUS_WORKER_PORTS; do start_node "$port" yes; done
  local c="$CITUS_COORDINATOR_PORT"
  psql_at "$c" -d invoices -qc "select citus_set_coordinator_host('127.0.0.1', $c)" >/dev/null
  for port in $CITUS_WORKER_PORTS; do
    if ! psql_at "$c" -d invoices -tAc "select 1 from pg_dist_node where nodeport = $port" | grep -q 1; then
      log "adding worker 127.0.0.1:$port"
      psql_at "$c" -d invoices -c "select citus_add_node('127.0.0.1', $port)" >/dev/null
    fi
  done
  # the same per-database settings as the single-node demo (the coordinator passes them on to
  # the workers, which run the statements Citus sends them with these settings)
  psql_at "$c" -d invoices \
    -c "alter database invoices set invoices.public_base_url = 'http://127.0.0.1:$CITUS_PUBLIC_PORT'" \
    -c "alter database invoices set invoices.allow_private_destinations = on" >/dev/null
  # the extension: created on the coordinator, which creates it on the workers too. A rebuilt
  # library means a development build: the nodes restart and the extension is created again
  # (the cluster's data is disposable, like the demo's).
  local want have
  want=$(md5sum "$("$PG_CONFIG" --pkglibdir)/invoices.so" | cut -d' ' -f1)
  have=$(psql_at "$c" -d invoices -tAc "select obj_description('invoices_internal'::regnamespace)" 2>/dev/null | grep -o 'build [0-9a-f]*' | cut -d' ' -f2 || true)
  if [ -n "$have" ] && [ "$want" != "$have" ]; then
    log "the extension was rebuilt: restarting the nodes and creating it again"
    for port in $(all_ports); do
      as_owner "$PG_BIN/pg_ctl" -D "$(node_dir "$port")" -m fast -w restart -l "$CITUS_DIR/log/node-$port.log" >/dev/null
    done
    psql_at "$c" -d invoices -c "drop extension invoices cascade" >/dev/null
    # (PostgREST's schema cache would name the old functions)
    local old_pid; old_pid=$(cat "$CITUS_DIR/run/postgrest.pid" 2>/dev/null || true)
    if [ -n "$old_pid" ] && kill -0 "$old_pid" 2>/dev/null; then kill "$old_pid"; while kill -0 "$old_pid" 2>/dev/null; do sleep 0.1; done; fi
  fi
  if ! psql_at "$c" -d invoices -tAc "select 1 from pg_extension where extname = 'invoices'" | grep -q 1; then
    log "creating extension invoices on the cluster"
    psql_at "$c" -d invoices -c "create extension invoices" \
      -c "comment on schema invoices_internal is 'Private tables of the invoices extension (build $want).'" >/dev/null
  fi
  # Citus opens its connections to the workers as the querying role: the API's roles log in
  # (pg_hba.conf lets them in from loopback only)
  psql_at "$c" -d invoices -c "alter role invoices_authenticator login" \
    -c "alter role invoices_api login" -c "alter role invoices_admin login" >/dev/null
  local calls; calls=$(psql_at "$c" -d invoices -tAc "select invoices.distribute_on_citus()")
  [ -n "$calls" ] && log "distributed: $(echo "$calls" | grep -c create_) calls made"
  # PostgREST in front of the coordinator
  mkdir -p "$CITUS_DIR/run" "$CITUS_DIR/log"
  cat > "$CITUS_DIR/postgrest.conf" <<CONF
# written by scripts/citus.sh
db-uri = "postgres://invoices_authenticator@127.0.0.1:$c/invoices"
db-pre-config = "invoices_internal.postgrest_config"
db-pool = 10
server-host = "127.0.0.1"
server-port = $CITUS_PGRST_PORT
admin-server-port = $CITUS_PGRST_ADMIN_PORT
log-level = "error"
CONF
  local pid; pid=$(cat "$CITUS_DIR/run/postgrest.pid" 2>/dev/null || true)
  if ! { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }; then
    log "starting PostgREST on http://127.0.0.1:$CITUS_PGRST_PORT (the coordinator)"
    setsid nohup "$PGRST_BIN" "$CITUS_DIR/postgrest.conf" >>"$CITUS_DIR/log/postgrest.log" 2>&1 < /dev/null &
    echo $! > "$CITUS_DIR/run/postgrest.pid"
  fi
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$CITUS_PGRST_ADMIN_PORT/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$CITUS_PGRST_ADMIN_PORT/ready" >/dev/null 2>&1 \
    || die "PostgREST did not become ready (log: $CITUS_DIR/log/postgrest.log)"
  # the web front of the cluster (hosted pages, the seed APIs, the pay button)
  WEB_DIR="$CITUS_DIR" PUBLIC_PORT="$CITUS_PUBLIC_PORT" PUBLIC_URL="http://127.0.0.1:$CITUS_PUBLIC_PORT" \
    PGRST_PORT="$CITUS_PGRST_PORT" bash "$ROOT/scripts/web_front.sh"
  log "ready: coordinator postgresql://postgres@127.0.0.1:$c/invoices, workers on ${CITUS_WORKER_PORTS// /, }, API http://127.0.0.1:$CITUS_PGRST_PORT, web front http://127.0.0.1:$CITUS_PUBLIC_PORT"
}

stop() {
  local pid port
  pid=$(cat "$CITUS_DIR/run/nginx.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping the cluster's web front"; kill "$pid"
  fi
  pid=$(cat "$CITUS_DIR/run/postgrest.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping the cluster's PostgREST"; kill "$pid"; rm -f "$CITUS_DIR/run/postgrest.pid"
  fi
  for port in $(all_ports); do
    if [ -f "$(node_dir "$port")/PG_VERSION" ] && node_running "$port"; then
      log "stopping Citus node :$port"
      as_owner "$PG_BIN/pg_ctl" -D "$(node_dir "$port")" -m fast -w stop >/dev/null
    fi
  done
}

# database NAME [--undistributed|--bare]: a fresh database NAME on every node, distributed like
# `invoices` (for the tests that want a database of their own), or with the extension not yet
# distributed, or (--bare) with Citus and its nodes only, the extension left to the caller;
# drop-database NAME removes it from every node
fresh_database() {
  local db=$1 mode=${2:-} port c="$CITUS_COORDINATOR_PORT"
  drop_database "$db"
  for port in $(all_ports); do
    psql_at "$port" -d postgres -c "create database \"$db\"" >/dev/null
    psql_at "$port" -d "$db" -c "create extension citus" >/dev/null
  done
  psql_at "$c" -d "$db" -c "select citus_set_coordinator_host('127.0.0.1', $c)" >/dev/null
  for port in $CITUS_WORKER_PORTS; do
    psql_at "$c" -d "$db" -c "select citus_add_node('127.0.0.1', $port)" >/dev/null
  done
  [ "$mode" = --bare ] && return 0
  psql_at "$c" -d "$db" -c "create extension invoices" >/dev/null
  [ "$mode" = --undistributed ] && return 0   # (a single node's layout, to distribute in place)
  PGOPTIONS="-c client_min_messages=warning" psql_at "$c" -d "$db" -c "select invoices.distribute_on_citus()" >/dev/null
}
drop_database() {
  local port
  for port in $(all_ports); do
    psql_at "$port" -d postgres -c "drop database if exists \"$1\" with (force)" >/dev/null
  done
}

status() {
  psql_at "$CITUS_COORDINATOR_PORT" -d invoices -c \
    "select nodename, nodeport, count(*) as shards from pg_dist_shard_placement group by 1, 2 order by 2"
}

case "${1:-}" in
  install) install_citus ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  destroy) stop; rm -rf "$CITUS_DIR" ;;
  database) fresh_database "${2:?database name}" "${3:-}" ;;
  drop-database) drop_database "${2:?database name}" ;;
  *) echo "usage: scripts/citus.sh start|stop|status|install|destroy|database NAME [--undistributed|--bare]|drop-database NAME" >&2; exit 2 ;;
esac
