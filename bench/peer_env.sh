#!/usr/bin/env bash
# Create the benchmark peer environment: titans-pytorch==0.5.5 (PyPI) in its own
# venv at bench/.peer-venv (gitignored). Never a dependency of our project.
# torch is installed first (2.13.0; a local CPU wheel is picked up via pip's
# configured find-links) and pinned with a constraints file so titans-pytorch's
# dependencies cannot pull in a different torch (or CUDA packages).
# Idempotent: does nothing if both packages are already at the pinned versions.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PEER_VENV:-$HERE/.peer-venv}"
TORCH_VERSION="2.13.0"
PEER_VERSION="0.5.5"
PY="$VENV/bin/python"

installed() {
    [ -x "$PY" ] && "$PY" - "$TORCH_VERSION" "$PEER_VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
t = version("torch").split("+")[0]
p = version("titans-pytorch")
sys.exit(0 if (t == sys.argv[1] and p == sys.argv[2]) else 1)
PYEOF
}

if installed; then
    echo "peer venv ready: $VENV (torch $TORCH_VERSION, titans-pytorch $PEER_VERSION)"
    exit 0
fi

start=$(date +%s)
[ -x "$PY" ] || python3 -m venv "$VENV"

CONSTRAINTS="$VENV/peer-constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

# pip's configured extra-index-url points at local mirrors that lack most
# projects; drop its "Location ... is ignored" noise, keep everything else.
pip_install() {
    "$PY" -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}
pip_install "torch==$TORCH_VERSION"
pip_install -c "$CONSTRAINTS" "titans-pytorch==$PEER_VERSION"

if ! installed; then
    echo "peer venv install failed verification" >&2
    "$PY" -m pip list >&2 || true
    exit 1
fi
echo "peer venv installed in $(( $(date +%s) - start ))s: $VENV"
"$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|titans-pytorch|triton|nvidia)' || true
