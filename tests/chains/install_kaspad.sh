#!/usr/bin/env bash
# kaspad (rusty-kaspa) 2.1.0 from crates.io into .local/kaspad, built once and reused (the build
# takes 20-35 minutes on 2 cores and needs protoc), and the Kaspa SDK (PyPI kaspa) that signs
# the test payments (tests/http/requirements.txt, installed with the other Python clients).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
have=$("$KASPAD_BIN" --version 2>&1 || true)   # (kaspad exits 1 after printing it)
if [[ "$have" != *"kaspad $KASPAD_VERSION"* ]]; then
  dpkg-query -W -f='${Status}' protobuf-compiler 2>/dev/null | grep -q "install ok installed" || {
    log "installing Debian package protobuf-compiler (kaspad's build needs protoc)"
    sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq protobuf-compiler >/dev/null
  }
  log "building kaspad $KASPAD_VERSION from crates.io into $LOCAL_DIR/kaspad (once; 20-35 minutes)"
  start=$(date +%s)
  cargo install kaspad --version "$KASPAD_VERSION" --locked --root "$LOCAL_DIR/kaspad" --quiet
  log "kaspad built in $(( $(date +%s) - start )) s"
fi
bash "$ROOT/tests/http/install_clients.sh"
