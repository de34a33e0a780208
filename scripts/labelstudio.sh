#!/usr/bin/env bash
# Run a local Label Studio server from .venv-labelstudio (make labelstudio-venv).
#   scripts/labelstudio.sh start DIR [--port N] [--document-root PATH] [--background]
#   scripts/labelstudio.sh status DIR
#   scripts/labelstudio.sh stop DIR
# DIR holds the data, server.json (pid, url), credentials.json (mode 0600) and server.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${BELTCURATE_PYTHON:-$root/.venv/bin/python}"
cd "$root"
exec "$python" -m curation.lsserver "$@"
