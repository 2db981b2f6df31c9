"""Execute some cells of a notebook (by id) in one fresh kernel, in order, and save their real outputs in place.

For `#| slow` cells whose notebook is too heavy to run whole: the named cells (and, first, every `#| export` cell, so the
notebook's definitions exist) run in the notebook's folder; only the named cells' outputs are saved.
Usage: python benchmarks/run_cells.py nbs/10_quality.ipynb d80d941f 6b4780b1 [--timeout 3600]
"""
import sys
from pathlib import Path
import nbformat
from nbclient import NotebookClient

def main(argv):
    timeout = int(argv[argv.index('--timeout') + 1]) if '--timeout' in argv else 3600
    ids = [a for a in argv[1:] if not a.startswith('--') and a != str(timeout)]
    path = Path(argv[0]); nb = nbformat.read(path, as_version=4)
    by_id = {c.get('id'): c for c in nb.cells}
    if missing := [i for i in ids if i not in by_id]: raise SystemExit(f"no cells with ids {missing} in {path}")
    exports = [c for c in nb.cells if c.cell_type == 'code' and c.source.lstrip().startswith('#| export') and c.get('id') not in ids]
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    with client.setup_kernel():
        for c in exports + [by_id[i] for i in ids]:
            keep = c.get('id') in ids
            saved = (c.get('outputs'), c.get('execution_count'))
            client.execute_cell(c, nb.cells.index(c))
            if not keep: c['outputs'], c['execution_count'] = saved
            print(f"ran {c.get('id')}{' (output saved)' if keep else ''}", flush=True)
    nbformat.write(nb, path)

if __name__ == '__main__': main(sys.argv[1:])
