#!/usr/bin/env bash
# Screenshots of the documentation site as a browser draws it, to look at by eye: builds the
# site (`make docs`), serves it on 127.0.0.1 and has headless Chromium photograph a page of
# each kind. A manual check (docs/development.md): it needs Chromium (Debian: `apt-get install
# chromium`), which `make setup` does not install, so neither `make test` nor CI runs it.
#
#   scripts/look_at_docs.sh [OUT_DIR] [PAGE ...]     (`make docs-look`)
#
# OUT_DIR: where the PNGs go (default /tmp/docs-shots); PAGE: site paths such as
# `reference/api/` (default: the pages below). CHROMIUM, PORT and WIDTH override the browser,
# the port (default 8765) and the window size (WIDTH x HEIGHT, default 1280 x 1600).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/docs-shots}
shift || true
pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  pages=("" getting-started/ guides/querying/ export/ lsdb/ glossary/ reference/columns/
         reference/cli/ reference/api/ reference/model-card/ reference/manifest/)
fi
browser=${CHROMIUM:-chromium}
port=${PORT:-8765}
command -v "$browser" >/dev/null || {
  echo "look_at_docs: needs Chromium ('$browser' not found; Debian: apt-get install chromium)" >&2
  exit 2
}
site=$(mktemp -d)
.venv/bin/mkdocs build --strict --quiet -d "$site"
.venv/bin/python -m http.server --bind 127.0.0.1 --directory "$site" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server"; rm -rf "$site"' EXIT
for _ in $(seq 50); do
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
    2>/dev/null && break
  sleep 0.1
done
mkdir -p "$out"
for page in "${pages[@]}"; do
  name=${page%/}
  name=${name//\//-}
  name=${name:-index}
  profile=$(mktemp -d)
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out/$name.png" --window-size="${WIDTH:-1280},${HEIGHT:-1600}" \
    "http://127.0.0.1:$port/$page" >/dev/null 2>&1 || echo "look_at_docs: $page failed" >&2
  rm -rf "$profile"
  echo "$out/$name.png"
done
