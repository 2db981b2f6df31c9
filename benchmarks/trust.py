"""Certificates and error bars on the fine-tuned MiniLM (2-label MNLI): the residual (LiSSA's sampled estimate and the
exact one from a full-data HVP) and the effective damping of the default and the fast LiSSA configurations, and the
error bars of 3 explained dev-matched examples. The default is block CG converged in the all-N system; with a 1,000-example
Hessian subsample its own residual is ≤ 1e-3 while `residual_all_N` is that of the same s_test in the all-N system.

Run: OMP_NUM_THREADS=1 nice python benchmarks/trust.py  -> benchmarks/results/trust.md and trust.json.
The same code and configuration as the `#| slow` trust cells of nbs/10_quality.ipynb (whose saved outputs come from it).
"""
from pathlib import Path
from fastif_nb.finetune import train_or_load
from fastif_nb.model import DEFAULT_FROZEN
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF, fast_lissa, default_solver
from fastif_nb.quality import trust_report

if __name__ == '__main__':
    model2, tok2, info2 = train_or_load(num_labels=2, progress=False)
    fif2 = FastIF(model2, tok2, load_mnli('train', num_labels=2), n_frozen_layers=DEFAULT_FROZEN, progress=False)
    dev2 = load_mnli('dev_matched', num_labels=2)
    rows3 = fif2.pick_points(dev2, 2, 1)
    configs = {'default: BlockCG on all N, damping auto': default_solver(progress=False),
               'BlockCG, H over 1,000 (hessian_size=1000)': default_solver(hessian_size=1000, progress=False),
               "paper's fast LiSSA (J=1000, B=1), T=2": fast_lissa(repeats=2), 'faster LiSSA (J=300, B=1), T=2': fast_lissa(depth=300, repeats=2)}
    cert, bars = trust_report(fif2, dev2.subset(rows3), configs, out_dir=Path(__file__).parent / 'results')
    print(cert.drop(columns='solver').round(4).to_string(index=False)); print(bars.round(5).to_string(index=False))
