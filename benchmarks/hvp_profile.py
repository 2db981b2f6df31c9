"""Where the time of one HVP batch goes: model FLOPs vs flat-vector bookkeeping (issue 10, item 3).

torch.profiler over `hvp` on the real top (`ClsTop` over the cached prefix states of the fine-tuned 2-label MiniLM),
for the batch shapes the solvers use: B = 1 (the paper's LiSSA) and B = 256 (block CG's data passes), m vectors.
Ops are grouped into 'bookkeeping' (copy_, cat, add, mul, div, sub, fill_, zero_, view/reshape/expand copies,
to/clone) and 'model' (matmul/addmm/bmm/linear/softmax/layer_norm/gelu/... and their backward).
Run: OMP_NUM_THREADS=1 python benchmarks/hvp_profile.py  -> benchmarks/results/hvp_profile.md
"""
import time, torch
from pathlib import Path
from torch.profiler import profile, ProfilerActivity
from fastif_nb.finetune import train_or_load
from fastif_nb.model import DEFAULT_FROZEN, cache_prefix
from fastif_nb.clstop import ClsTop
from fastif_nb.task import ClassificationTask
from fastif_nb.data import load_mnli
from fastif_nb.text import tokenize
from fastif_nb.hvp import hvp

BOOK = ('copy_', 'cat', 'add', 'mul', 'div', 'sub', 'fill_', 'zero_', 'clone', 'to', '_to_copy', 'contiguous', 'stack',
        'index', 'select', 'slice', 'as_strided', 'empty', 'zeros', 'ones', 'sum', 'neg', 'where', 'split', 'unbind', 'narrow')

def share(prof):
    tot = book = 0.0
    for e in prof.key_averages():
        if e.key.startswith('aten::') and e.cpu_time_total > 0:
            t = e.self_cpu_time_total; tot += t
            if e.key[6:].rstrip('_') in {b.rstrip('_') for b in BOOK} or e.key[6:] in BOOK: book += t
    return book / tot, tot

if __name__ == '__main__':
    torch.set_num_threads(1)
    model, tok, _ = train_or_load(num_labels=2, progress=False)
    data = cache_prefix(model, tokenize(load_mnli('train', num_labels=2).subset(range(512)), tok, max_length=128), DEFAULT_FROZEN, progress=False)
    task = ClassificationTask(ClsTop(model, DEFAULT_FROZEN), weight_decay=0.005, collate_fn=data.collate)
    rows = []
    for B, m in ((1, 1), (1, 6), (32, 6), (256, 6)):
        batch = task.batch(data, range(B)); V = torch.randn(task.n_params, m)
        for _ in range(2): hvp(task, batch, V)
        reps = max(1, 64 // B)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(reps): hvp(task, batch, V)
            wall = (time.perf_counter() - t0) / reps
        b, tot = share(prof)
        rows.append(f"| {B} | {m} | {1e3 * wall:.1f} | {1e3 * wall / (B * m):.2f} | {100 * b:.0f}% | {100 * (1 - b):.0f}% |")
        print(rows[-1], flush=True)
    Path(__file__).parent.joinpath('results', 'hvp_profile.md').write_text(
        "# One HVP batch: model FLOPs vs bookkeeping (benchmarks/hvp_profile.py)\n\n"
        f"`ClsTop` of the fine-tuned 2-label MiniLM ({task.n_params:,} parameters), cached prefix states of bundled MNLI training "
        "pairs, torch 2.13.0, 1 thread, `hvp` (double backward) with m right-hand sides. Share = self CPU time of the aten ops, "
        "grouped as in the script's docstring.\n\n| B (examples) | m (vectors) | ms per HVP batch | ms per example-vector | "
        "bookkeeping ops | model ops |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
