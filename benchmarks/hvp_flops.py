"""HVPs, scoring and gradients per second on the real top, and the share of the CPU's measured matmul peak they reach
(issue 10, item 3: "report HVPs and candidates per second and the share of a FLOP-count floor that each reaches").

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions: the model's arithmetic, the
floor any implementation must do); the peak is the FLOP rate of a large float32 matmul on the same thread.
Run: OMP_NUM_THREADS=1 python benchmarks/hvp_flops.py  -> benchmarks/results/hvp_flops.md
"""
import os, time, statistics, torch
from pathlib import Path
from torch.utils.flop_counter import FlopCounterMode
from fastif_nb.finetune import train_or_load
from fastif_nb.model import DEFAULT_FROZEN, cache_prefix
from fastif_nb.clstop import ClsTop
from fastif_nb.task import ClassificationTask
from fastif_nb.data import load_mnli
from fastif_nb.text import tokenize
from fastif_nb.hvp import hvp
from fastif_nb.influence import score_candidates

def timed(f, reps=3):
    f(); ts = []
    for _ in range(reps): t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def flops(f):
    with FlopCounterMode(display=False) as c: f()
    return c.get_total_flops()

if __name__ == '__main__':
    torch.set_num_threads(1)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    peak = 2 * 2048 ** 3 / timed(lambda: a @ b)
    model, tok, _ = train_or_load(num_labels=2, progress=False)
    data = cache_prefix(model, tokenize(load_mnli('train', num_labels=2).subset(range(256)), tok, max_length=128), DEFAULT_FROZEN, progress=False)
    task = ClassificationTask(ClsTop(model, DEFAULT_FROZEN), weight_decay=0.005, collate_fn=data.collate)
    m, rows = 6, []
    for B in (1, 32, 256):
        batch, V = task.batch(data, range(B)), torch.randn(task.n_params, m)
        f = lambda: hvp(task, batch, V)
        t, F = timed(f, 3 if B < 256 else 2), flops(f)
        rows.append((f'HVP (double backward, one backward per vector), B = {B}, m = {m}', B * m, 'example-vectors', t, F))
    def batched_hvp(task, batch, V):  # the former implementation: the second backward batched over V's columns (vmap)
        flat = task.flat_params().detach().requires_grad_()
        g, = torch.autograd.grad(task.losses(batch, flat).mean(), flat, create_graph=True)
        return torch.autograd.grad(g, flat, grad_outputs=V.T.contiguous(), is_grads_batched=True)[0].T
    batch, V = task.batch(data, range(256)), torch.randn(task.n_params, m)
    f = lambda: batched_hvp(task, batch, V)
    rows.append((f'HVP, B = 256, m = {m}, second backward batched with `is_grads_batched` (before)', 256 * m, 'example-vectors', timed(f, 2), flops(f)))
    a, b = hvp(task, batch, V) - 2 * task.weight_decay * task.decay_mask[:, None] * V, batched_hvp(task, batch, V)
    same = float((a - b).abs().max() / b.abs().max())  # the decay term is added by `hvp` only
    S = torch.randn(task.n_params, m)
    for meth in ('jvp', 'grad'):
        f = lambda: score_candidates(task, data, S, torch.arange(256), batch_size=64, score_method=meth, progress=False)
        rows.append((f'scoring 256 candidates × {m} s_test ({meth})', 256, 'candidates', timed(f, 2), flops(f)))
    f = lambda: task.per_example_grads(task.batch(data, range(64)))
    rows.append(('per-example gradients, 64 examples', 64, 'examples', timed(f, 2), flops(f)))
    lines = [f"| {name} | {n / t:,.0f} {unit}/s | {1e3 * t / n:.2f} ms | {F / n / 1e6:.1f} | {F / t / 1e9:.2f} | {100 * F / t / peak:.0f}% |"
             for name, n, unit, t, F in rows]
    md = ("# HVPs and scoring per second, and their share of the matmul peak (benchmarks/hvp_flops.py)\n\n"
          f"`ClsTop` of the fine-tuned 2-label MiniLM ({task.n_params:,} parameters: encoder layer 5 for [CLS] + pooler + classifier), "
          f"cached prefix states of the first 256 bundled MNLI training pairs, torch {torch.__version__}, 1 thread. FLOPs counted by "
          "`torch.utils.flop_counter.FlopCounterMode` (matrix products: the arithmetic any implementation must do). Peak = a "
          f"2048 × 2048 float32 matmul on the same thread: **{peak / 1e9:.1f} GFLOP/s**. Load average at the start: "
          f"{os.getloadavg()[0]:.1f} (2 cores). The two HVP implementations agree to a max relative difference of {same:.1e}.\n\n| operation | rate | time per unit | MFLOP per unit | GFLOP/s | share of peak |\n"
          "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    Path(__file__).parent.joinpath('results', 'hvp_flops.md').write_text(md); print(md)
