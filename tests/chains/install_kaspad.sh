#!/usr/bin/env bash
# kaspad (rusty-kaspa) from crates.io, built once per machine into the build cache outside the
# clone ($KASPAD_CACHE: the build takes 20-35 minutes on 2 cores and needs protoc) and copied
# into .local/kaspad; and the Kaspa SDK (PyPI kaspa) that signs the test payments
# (tests/http/requirements.txt, installed with the other Python clients).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
version_of() { "$1" --version 2>&1 || true; }   # (kaspad exits 1 after printing it)
cached="$KASPAD_CACHE/bin/kaspad"
if [[ "$(version_of "$cached")" != *"kaspad $KASPAD_VERSION"* ]]; then
  mkdir -p "$KASPAD_CACHE/bin"
  if [[ "$(version_of "$KASPAD_BIN")" == *"kaspad $KASPAD_VERSION"* ]]; then
    log "keeping this clone's kaspad $KASPAD_VERSION in the build cache $KASPAD_CACHE"
    install -m 755 "$KASPAD_BIN" "$cached"
  else
    dpkg-query -W -f='${Status}' protobuf-compiler 2>/dev/null | grep -q "install ok installed" || {
      log "installing Debian package protobuf-compiler (kaspad's build needs protoc)"
      sudo_ apt-get update -qq
      DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq protobuf-compiler >/dev/null
    }
    log "building kaspad $KASPAD_VERSION from crates.io into $KASPAD_CACHE (once per machine; 20-35 minutes)"
    start=$(date +%s)
    cargo install kaspad --version "$KASPAD_VERSION" --locked --root "$KASPAD_CACHE" --quiet
    log "kaspad built in $(( $(date +%s) - start )) s"
  fi
fi
if ! cmp -s "$cached" "$KASPAD_BIN"; then
  mkdir -p "$(dirname "$KASPAD_BIN")"
  install -m 755 "$cached" "$KASPAD_BIN"
fi
bash "$ROOT/tests/http/install_clients.sh"
