"""Effect visualisation (FastIF §6.2, App. C.2, Fig. 5, Tables 5 and 6) on the cached 2-label MiniLM.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/apps_graph.py
  -> benchmarks/results/apps_graph.md and apps_graph.png. The same call as the `#| slow` cells of
  nbs/11b_graph.ipynb (whose saved outputs and these result files come from running it).
"""
from pathlib import Path
from fastif_nb.apps.retrain import nli_head_setup
from fastif_nb.apps.graph import graph_study

if __name__ == '__main__':
    study = graph_study(nli_head_setup(), out_dir=Path(__file__).parent / 'results')
    for m in ('MNLI-trained', 'HANS-trained'): print(m); print(study[m]['table5'].round(3).to_string())
