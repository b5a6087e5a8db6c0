#!/usr/bin/env bash
# Creates (or reuses) a Python venv with DBOS Transact Python for the interoperability tests.
# Usage: scripts/dbos-python-venv.sh <venv-dir>
# Prints the venv's bin folder on success.
set -euo pipefail
venv=${1:?usage: $0 <venv-dir>}
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements-interop.txt"
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "python3 is required for the DBOS interoperability tests (install python3 and python3-venv)" >&2
  exit 1
fi
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/dbos" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv/bin"
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --disable-pip-version-check -q -r "$req" >&2
echo "$want" > "$stamp"
echo "$venv/bin"
