#!/usr/bin/env bash
# README command 1: set everything up and run the main job (PostgreSQL 15 with the extension
# on 127.0.0.1:5433, database `invoices`, PostgREST on :3000, Anvil on :8545, then the demos). Stop with: bash scripts/stop.sh
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/setup.sh"
bash "$here/demo.sh"
bash "$here/chain_demo.sh"
source "$here/env.sh"
log "running: psql postgresql://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE   (stop: bash scripts/stop.sh)"
