"""Fast vs Full influence correlations (paper Table 2) and kNN recall (Fig. 3a) on the fine-tuned MiniLM / MNLI.

Run: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/quality.py [n_correct n_wrong]
  -> benchmarks/results/quality.md and recall.png (the same `run_quality` as nbs/10_quality.ipynb). About 20 min on 2 cores.
"""
import sys
from pathlib import Path
from fastif_nb.finetune import train_or_load
from fastif_nb.model import DEFAULT_FROZEN
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF
from fastif_nb.lissa import LiSSA
from fastif_nb.quality import pick_points, run_quality, summarise

if __name__ == '__main__':
    n_correct, n_wrong = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (5, 5)
    model, tok, info = train_or_load(num_labels=3)
    fif = FastIF(model, tok, load_mnli('train'), n_frozen_layers=DEFAULT_FROZEN)
    dev = load_mnli('dev_matched')
    idx = pick_points(fif, dev, n_correct, n_wrong)
    corr, rec, _ = run_quality(fif, dev.subset(idx), fast_solver=LiSSA(depth=300, batch_size=1, repeats=2, damping=0.01, seed=2),
                               full_solver=LiSSA(depth=300, batch_size=4, repeats=1, damping=0.01, seed=1), k=1000,
                               out_dir=Path(__file__).parent / 'results')
    print(summarise(corr[['pearson', 'spearman', 'kendall']]))
