#!/usr/bin/env bash
# Installs the end-to-end suites' HTTP clients into .local/ (idempotent, quick when present):
# @supabase/postgrest-js from npm and postgrest (postgrest-py) from PyPI, both pinned.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
POSTGREST_JS_VERSION="2.119.1"
mkdir -p "$NPM_DIR"
[ -f "$NPM_DIR/package.json" ] || echo '{"private": true}' > "$NPM_DIR/package.json"
if ! grep -qs "\"version\": \"$POSTGREST_JS_VERSION\"" "$NPM_DIR/node_modules/@supabase/postgrest-js/package.json"; then
  log "installing @supabase/postgrest-js $POSTGREST_JS_VERSION (npm)"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "@supabase/postgrest-js@$POSTGREST_JS_VERSION" >/dev/null)
fi
VENV="$LOCAL_DIR/venv"
req="$ROOT/tests/http/requirements.txt"
stamp="$VENV/.requirements.md5"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the Python venv for postgrest-py"
  python3 -m venv "$VENV" 2>/dev/null || { sudo_ apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$VENV"; }
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$(md5sum < "$req")" ]; then
  log "installing $(tr '\n' ' ' < "$req")(PyPI)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  md5sum < "$req" > "$stamp"
fi
