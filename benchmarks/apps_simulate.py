"""Simulatability (FastIF §6.1, App. C.1, Fig. 4 / 11) on the cached 2-label MiniLM.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/apps_simulate.py
  -> benchmarks/results/apps_simulate.md and apps_simulate.png. The same call as the `#| slow` cells of
  nbs/11a_simulate.ipynb (whose saved outputs and these result files come from running it).
"""
from pathlib import Path
from fastif_nb.apps.retrain import nli_head_setup
from fastif_nb.apps.simulate import simulate_study

if __name__ == '__main__':
    study = simulate_study(nli_head_setup(), out_dir=Path(__file__).parent / 'results')
    print(study['summary'].round(4).to_string())
