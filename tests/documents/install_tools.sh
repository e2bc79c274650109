#!/usr/bin/env bash
# The document tests' tools, from Debian (idempotent, quick when present): poppler-utils
# (pdftotext, pdftoppm, pdfinfo), zbar-tools (zbarimg reads the QR codes back) and chromium
# (headless, for the hosted page).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
missing=()
for p in poppler-utils zbar-tools chromium; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
