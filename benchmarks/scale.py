"""Cost against N (issue 10 item 6): candidate selection measured at N = 8,999 / 100,000 / 392,702, model costs measured
per example on the real top, per-query time extrapolated from those unit costs.

Run:  PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scale.py  -> benchmarks/results/scale.md
Needs /tmp/fastif_selector/train.pt (written by benchmarks/selector.py) and, for the solve costs, its reference file.

Synthetic training sets beyond 8,999: the real head inputs / [CLS] states / residuals of the 8,999 bundled MNLI pairs,
resampled with replacement plus small Gaussian noise (σ = 0.05 × the feature std), so sizes and spectra are realistic.
"""
import os, time, tempfile, resource
from pathlib import Path
import numpy as np
import torch

RESULTS = Path(__file__).parent / 'results'
NS, K, M = (8_999, 100_000, 392_702), 1000, 6

def timed(f, reps=3):
    f(); ts = []
    for _ in range(reps): t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return float(np.median(ts))

def main():
    torch.set_num_threads(1)
    from fastif_nb.finetune import train_or_load
    from fastif_nb.model import DEFAULT_FROZEN
    from fastif_nb.clstop import ClsTop
    from fastif_nb.task import ClassificationTask
    from fastif_nb.knn import FeatureIndex
    from fastif_nb.selector import HeadSelector, head_inputs
    from fastif_nb.influence import score_candidates, query_gradients
    from fastif_nb.hvp import data_hvp
    work = Path(tempfile.gettempdir()) / 'fastif_selector'
    model, _, _ = train_or_load(num_labels=2, progress=False)
    train = torch.load(work / 'train.pt', weights_only=False)
    top = ClsTop(model, DEFAULT_FROZEN); task = ClassificationTask(top, weight_decay=0.005, collate_fn=train.collate)
    got = []
    h = top.bert.pooler.register_forward_hook(lambda m, i, o: got.append(i[0][:, 0].detach()))
    t0 = time.perf_counter(); X, P, y = head_inputs(task, train, batch_size=64, progress=False); t_feat = time.perf_counter() - t0
    h.remove(); F = torch.cat(got)
    load0 = os.getloadavg()
    # ---- model unit costs on the real top (per example, 1 thread)
    order = torch.argsort(train.lengths)
    mid = order[len(order) // 2 - 128: len(order) // 2 + 128].tolist()   # 256 pairs of median length
    class Sub(torch.utils.data.Dataset):
        def __init__(s, idx): s.idx = idx
        def __len__(s): return len(s.idx)
        def __getitem__(s, i): return train[s.idx[i]]
    sub = Sub(mid)
    test = Sub(mid[:M])
    G = query_gradients(task, test)
    S = torch.randn(task.n_params, M) * 1e-3
    u_jvp = timed(lambda: score_candidates(task, train, S, torch.tensor(mid), 64, 'jvp', False), 1) / 256
    u_hvp6 = timed(lambda: data_hvp(task, sub, S, 256), 1) / 256
    from fastif_nb.selector import _logit_jacobians
    u_grad = timed(lambda: _logit_jacobians(task, task.batch(train, mid[:16])), 1) / 16
    print(f'unit costs: JVP scoring (6 queries) {u_jvp*1e3:.2f} ms/candidate, HVP (6 rhs) {u_hvp6*1e3:.2f} ms/example, '
          f'per-example gradient {u_grad*1e3:.2f} ms/example; features {t_feat/len(train)*1e3:.3f} ms/example', flush=True)
    ref = next(iter(sorted(work.glob('ref_*.pt'))), None)
    ref = torch.load(ref, weights_only=False) if ref else None
    rows = []
    rng = np.random.default_rng(0)
    for N in NS:
        idx = np.arange(N) if N == len(train) else rng.integers(len(train), size=N)
        noise = lambda A: torch.as_tensor(A[idx]) + (0 if N == len(train) else 0.05 * A.std(0) * torch.randn(N, A.shape[1]))
        Fn, Xn = noise(F).float().numpy(), noise(X).float()
        Pn, yn = P[idx], y[idx]
        t0 = time.perf_counter(); index = FeatureIndex.build(Fn, progress=False); t_ib = time.perf_counter() - t0
        t_is = timed(lambda: index.search(Fn[:M], K))
        t0 = time.perf_counter(); hs = HeadSelector.from_features(Xn, Pn, yn, damping=0.2555, weight_decay=0.005); t_hb = time.perf_counter() - t0
        q = (Xn[:M], Pn[:M], yn[:M])
        t_hs = timed(lambda: hs.search(q, K))
        mem_i, mem_h = Fn.nbytes, hs.X.numel() * 4 + hs.R.numel() * 4 + hs.factor.numel() * 8
        rows.append((N, index.kind, t_ib, t_is, mem_i, t_hb, t_hs, mem_h))
        print(rows[-1], flush=True)
        del index, hs, Fn, Xn
    write(rows, u_jvp, u_hvp6, u_grad, t_feat / len(train), ref, load0)

def write(rows, u_jvp, u_hvp6, u_grad, u_feat, ref, load0):
    load1 = os.getloadavg()
    mb = lambda b: f'{b / 2**20:,.0f} MB'
    L = ['# Cost against N\n',
         'Candidate selection measured at each N (6 queries, k = 1,000; median of 3 after a warm-up; synthetic sets beyond 8,999 resample '
         'the real features of the 8,999 bundled MNLI pairs with 5% noise). Model costs measured per example on the real top '
         '(`ClsTop`, MiniLM layer 5 + pooler + classifier, 1.92M parameters, 256 training pairs of median length, 1 thread). '
         f'torch {torch.__version__}, `nice -n 10`, 2 cores shared with other jobs (load {load0[0]:.1f} → {load1[0]:.1f}): absolute '
         'times are inflated by the sharing.\n',
         '| N | kNN index | kNN build (s) | kNN search, 6 queries (s) | kNN memory | HeadSelector build (s) | HeadSelector search, 6 queries (s) | HeadSelector memory |',
         '|---|---|---|---|---|---|---|---|']
    for N, kind, tib, tis, mi, thb, ths, mh in rows:
        L.append(f'| {N:,} | {kind} | {tib:.1f} | {tis:.3f} | {mb(mi)} | {thb:.1f} | {ths:.3f} | {mb(mh)} |')
    L += ['', f'Unit costs (per example, 6 queries at once): JVP scoring {u_jvp * 1e3:.2f} ms per candidate; HVP with 6 right-hand sides '
          f'{u_hvp6 * 1e3:.2f} ms per Hessian example per iteration; per-example gradient (margin Jacobian) {u_grad * 1e3:.2f} ms; '
          f'features for the selectors (one forward) {u_feat * 1e3:.3f} ms.\n']
    N = 392_702
    sel = rows[-1][6] / M
    if ref is not None:
        nh, it = 1000, ref['iters']
        solve = it * nh * u_hvp6 / M
        L.append(f'Extrapolated per-query time at N = {N:,} (6 queries solved together, per query):\n')
        L.append('| configuration | selection | s_test | scoring | total per query |')
        L.append('|---|---|---|---|---|')
        sc_k, sc_N = K * u_jvp / M, N * u_jvp / M
        L.append(f'| HeadSelector k=1,000 + BlockCG ({it} iterations on a {nh:,}-pair Hessian set, as in selector.md) + JVP scoring of k | '
                 f'{sel:.2f} s | {solve:.1f} s | {sc_k:.1f} s | {sel + solve + sc_k:.1f} s |')
        L.append(f'| Full: BlockCG on the same Hessian set + JVP scoring of all N | – | {solve:.1f} s | {sc_N:.0f} s | {solve + sc_N:.0f} s |')
        full_h = it * N * u_hvp6 / M
        L.append(f'| Full with the Hessian over all N ({it} iterations assumed) | – | {full_h:.0f} s | {sc_N:.0f} s | {full_h + sc_N:.0f} s |')
        L.append('')
        L.append(f's_test cost = iterations × Hessian-set size × HVP unit cost / 6; the number of iterations ({it}) is the one measured in '
                 'selector.md (it depends on the spectrum, not on N). One-off costs at N = 392,702: features '
                 f'{N * u_feat:.0f} s, HeadSelector build {rows[-1][5]:.0f} s (measured), SketchSelector build (per-example gradients) '
                 f'{N * u_grad:.0f} s, kNN index {rows[-1][2]:.0f} s (measured).')
    out = RESULTS / 'scale.md'; out.write_text('\n'.join(L) + '\n'); print('\n'.join(L))

if __name__ == '__main__': main()
