#!/usr/bin/env bash
# An installable artifact: `cargo pgrx package` (the library, the control file, the SQL of this
# version) plus the earlier releases' SQL and the upgrade scripts, as a tarball whose paths are
# the system PostgreSQL 15's (extract it at / and CREATE EXTENSION, or ALTER EXTENSION UPDATE).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
out="$LOCAL_DIR/package"
rm -rf "$out"
(cd "$ROOT" && CARGO_TERM_COLOR=never NO_COLOR=1 cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$out" \
  > "$LOCAL_DIR/log/package.log" 2>&1) || { tail -20 "$LOCAL_DIR/log/package.log" >&2; die "cargo pgrx package failed"; }
ext="$out$("$PG_CONFIG" --sharedir)/extension"
cp "$ROOT"/sql/releases/*.sql "$ROOT"/sql/upgrades/*.sql "$ext/"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
tarball="$LOCAL_DIR/invoices-$version-pg15-$(uname -m).tar.gz"
tar -C "$out" -czf "$tarball" .
echo "$tarball"
