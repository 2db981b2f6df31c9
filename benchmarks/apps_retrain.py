"""Retraining check (FastIF §5.4, Fig. 3c / 10) on the cached 2-label MiniLM: Fast vs Full vs random removal.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/apps_retrain.py
  -> benchmarks/results/apps_retrain.md and apps_retrain.png. The same call as the `#| slow` cells of nbs/11_retrain.ipynb
  (whose saved outputs and these result files come from running it). About 5-10 min CPU (one thread) after the
  [CLS] states are cached (~3 min CPU once).
"""
from pathlib import Path
from fastif_nb.apps.retrain import nli_head_setup, retrain_study

if __name__ == '__main__':
    study = retrain_study(nli_head_setup(), out_dir=Path(__file__).parent / 'results')
    print(study['summary'].round(4).to_string())
