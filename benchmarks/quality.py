"""Fast vs Full influence correlations (paper Table 2), both against a converged reference, and kNN recall (Fig. 3a).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality.py [n_correct n_wrong]
  -> benchmarks/results/quality.md and recall.png. The same code and configuration as the `#| slow` cells of
  nbs/10_quality.ipynb (whose saved outputs come from running those cells). Every solver uses the damping 'auto' fits
  (H + λI positive definite); the reference is block CG to a relative residual of 1e-5 in the system of all N. About
  an hour of one CPU core.
"""
import sys
from pathlib import Path
from fastif_nb.finetune import train_or_load
from fastif_nb.model import DEFAULT_FROZEN
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF, default_solver
from fastif_nb.blockcg import BlockCG
from fastif_nb.lissa import LiSSA
from fastif_nb.quality import run_quality, summarise

if __name__ == '__main__':
    n_correct, n_wrong = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (5, 5)
    model, tok, info = train_or_load(num_labels=3, progress=False)
    fif = FastIF(model, tok, load_mnli('train'), n_frozen_layers=DEFAULT_FROZEN, progress=False)
    dev = load_mnli('dev_matched')
    idx = fif.pick_points(dev, n_correct, n_wrong)
    default = default_solver(progress=False)
    lam = default.fit(fif.task, fif.train_cached).damping_  # damping='auto': every solver below solves the same system
    scale = LiSSA(batch_size=1, damping=lam, seed=0).resolve_scale(fif.task, fif.train_cached)  # one scale for every LiSSA
    corr, rec, secs = run_quality(fif, dev.subset(idx),
                                  fast_solver=LiSSA(depth=300, batch_size=1, repeats=2, damping=lam, scale=scale, seed=2),
                                  full_solver=LiSSA(depth=300, batch_size=4, repeats=1, damping=lam, scale=scale, seed=1),
                                  k=1000, out_dir=Path(__file__).parent / 'results',
                                  reference=BlockCG(damping=lam, tol=1e-5, progress=False), default=default)
    for name, df in corr.items(): print(f'{name}: {summarise(df)}')
