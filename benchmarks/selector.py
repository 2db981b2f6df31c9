"""Candidate selectors vs a converged reference: L2 kNN on [CLS] states, HeadSelector, SketchSelector, random.

Run:  PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 python benchmarks/selector.py [--n-hessian 2000] [--smoke]
      -> benchmarks/results/selector.md   (intermediates cached in /tmp/fastif_selector/; --smoke: tiny BERT, /tmp)

Problem: the cached fine-tuned 2-label MiniLM (`train_or_load(num_labels=2)`, not retrained); influence parameters =
encoder layer 5 + pooler + classifier (1.92M) through `ClsTop`, on cached prefix states of all 8,999 bundled MNLI
training pairs; objective = mean cross-entropy + the fine-tune's weight decay (0.005); 6 dev-matched queries (seeded
order, the first 3 the model gets right and the first 3 it gets wrong, gold labels).
Reference: BlockCG(damping='auto', tol=1e-3) on the Hessian over --n-hessian training pairs (0: all), every training
pair's exact gradient dotted with its s_test (scores of all N). Metrics: R@10 / R@100 of the reference's top-|influence|
sets at k in {100, 1000, 3000}, averaged over the queries (and per query).
"""
import argparse, os, sys, time, warnings, tempfile
from pathlib import Path
import numpy as np
import torch

RESULTS = Path(__file__).parent / 'results'
KS, MS = (100, 1000, 3000), (10, 100)

class Sub(torch.utils.data.Dataset):
    "A subset view of a dataset (same items)."
    def __init__(self, ds, idx): self.ds, self.idx = ds, [int(i) for i in idx]
    def __len__(self): return len(self.idx)
    def __getitem__(self, i): return self.ds[self.idx[i]]

def setup_real(a, work):
    from fastif_nb.finetune import train_or_load
    from fastif_nb.model import cache_prefix, DEFAULT_FROZEN
    from fastif_nb.data import load_mnli
    from fastif_nb.text import tokenize
    model, tok, _ = train_or_load(num_labels=2, progress=False)
    p = work / 'train.pt'
    if p.exists(): train = torch.load(p, weights_only=False)
    else:
        train = cache_prefix(model, tokenize(load_mnli('train', num_labels=2), tok, max_length=128), DEFAULT_FROZEN, progress=False)
        train.source = None; torch.save(train, p)
    dev = load_mnli('dev_matched', num_labels=2)
    order = torch.randperm(len(dev), generator=torch.Generator().manual_seed(0))[:300].tolist()
    pool = cache_prefix(model, tokenize(dev.subset(order), tok, max_length=128), DEFAULT_FROZEN, progress=False)
    return model, DEFAULT_FROZEN, train, pool, 0.005, 'the cached fine-tuned 2-label MiniLM, all 8,999 bundled MNLI training pairs'

def setup_smoke(a, work):
    from fastif_nb.testing import tiny_bert
    from fastif_nb.model import CachedDataset
    model = tiny_bert(num_labels=2, layers=2)
    g = torch.Generator().manual_seed(0)
    mk = lambda n: CachedDataset([torch.randn(int(torch.randint(3, 12, (1,), generator=g)), 32, generator=g) for _ in range(n)],
                                 torch.randint(2, (n,), generator=g), 1)
    return model, 1, mk(400), mk(60), 0.005, 'SMOKE: tiny random BERT, 400 random cached items'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--smoke', action='store_true'); ap.add_argument('--n-hessian', type=int, default=2000)
    ap.add_argument('--tol', type=float, default=1e-3); ap.add_argument('--sketch-dims', default='4096')
    ap.add_argument('--fit-size', type=int, default=None, help="fit damping='auto' on a seeded subsample of this many (as default_solver: 1000)")
    ap.add_argument('--out', default=None); ap.add_argument('--no-sketch', action='store_true', help='score all N by JVP and skip SketchSelector')
    a = ap.parse_args()
    global KS
    if a.smoke: KS = (100, 200, 300)
    torch.set_num_threads(1); torch.manual_seed(0)
    from fastif_nb.task import ClassificationTask
    from fastif_nb.clstop import ClsTop
    from fastif_nb.blockcg import BlockCG
    from fastif_nb.influence import query_gradients
    from fastif_nb.knn import FeatureIndex, recall_curve, random_recall
    from fastif_nb.selector import HeadSelector, SketchSelector, head_inputs, head_linear
    work = Path(tempfile.gettempdir()) / ('fastif_selector_smoke' if a.smoke else 'fastif_selector'); work.mkdir(exist_ok=True)
    out = Path(a.out) if a.out else (work / 'selector.md' if a.smoke else RESULTS / 'selector.md')
    load0, t_start = os.getloadavg(), time.perf_counter()
    model, nf, train, pool, wd, desc = (setup_smoke if a.smoke else setup_real)(a, work)
    N = len(train)
    top = ClsTop(model, nf)
    task = ClassificationTask(top, weight_decay=wd, collate_fn=train.collate)
    log = lambda *s: print(f'[{time.perf_counter() - t_start:7.1f} s]', *s, flush=True)
    # [CLS] states (kNN features) and head inputs in one forward pass each (hooks)
    def cls_and_head(ds):
        got = []
        h = top.bert.pooler.register_forward_hook(lambda m, i, o: got.append(i[0][:, 0].detach()))
        try: X, P, y = head_inputs(task, ds, batch_size=64, progress=False)
        finally: h.remove()
        return torch.cat(got).float().numpy(), X, P, y
    t0 = time.perf_counter(); F_tr, X_tr, P_tr, y_tr = cls_and_head(train); t_feat = time.perf_counter() - t0
    F_po, X_po, P_po, y_po = cls_and_head(pool)
    pred = P_po.argmax(1)
    right = [i for i in range(len(pool)) if pred[i] == y_po[i]][:3]; wrong = [i for i in range(len(pool)) if pred[i] != y_po[i]][:3]
    qi = right + wrong
    test = Sub(pool, qi)
    log(f'{desc}; N={N}; p={task.n_params:,}; features {t_feat:.1f} s; queries {qi} (3 right, 3 wrong); train accuracy '
        f'{(P_tr.argmax(1) == y_tr).float().mean():.3f}')
    # ---- reference
    ref_p = work / f'ref_{a.n_hessian}_{a.tol:g}.pt'
    hidx = (torch.randperm(N, generator=torch.Generator().manual_seed(0))[:a.n_hessian].sort().values
            if 0 < a.n_hessian < N else torch.arange(N))
    hset = Sub(train, hidx[torch.argsort(train.lengths[hidx])])   # length-sorted: less padding per batch (H is order-free)
    G = query_gradients(task, test)   # [m, p]
    if ref_p.exists(): ref = torch.load(ref_p, weights_only=False); log('reference loaded from', ref_p)
    else:
        solver = BlockCG(damping='auto', tol=a.tol, maxiter=300, batch_size=256, fit_tol=1e-2 if a.fit_size is None else 0.1,
                         fit_maxiter=20, fit_size=a.fit_size, cache_dir=work, progress=False)
        c0, t0 = time.process_time(), time.perf_counter(); solver.fit(task, hset); t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        log(f'fit: λ_min {solver.lambda_min_:.4f}, damping {solver.damping_:.4f}, {solver.fit_["passes"]} passes, {t_fit:.0f} s')
        c0, t0 = time.process_time(), time.perf_counter()
        with warnings.catch_warnings(): warnings.simplefilter('ignore'); S = solver.solve(task, hset, G.T, progress=False)
        t_solve, c_solve = time.perf_counter() - t0, time.process_time() - c0
        ref = dict(S=S, lambda_min=solver.lambda_min_, damping=solver.damping_, fit_passes=solver.fit_['passes'],
                   iters=solver.iterations_, residual=solver.residuals_.tolist(), t_fit=t_fit, c_fit=c_fit, t_solve=t_solve, c_solve=c_solve)
        torch.save(ref, ref_p)
    log(f'reference: damping {ref["damping"]:.4f} (λ_min {ref["lambda_min"]:.4f}), {ref["iters"]} block iterations, residuals '
        f'{["%.1e" % r for r in ref["residual"]]}, fit {ref["t_fit"]:.0f} s, solve {ref["t_solve"]:.0f} s')
    lam = ref['damping']
    # ---- one per-example-gradient pass: SketchSelector build + exact scores of all N against the reference s_test
    dims = [int(d) for d in a.sketch_dims.split(',')]
    sk_p = work / f'sketch_{a.n_hessian}_{a.tol:g}_{dims[0]}.pt'
    if a.no_sketch:
        from fastif_nb.influence import score_candidates
        sk = None; c0, t0 = time.process_time(), time.perf_counter()
        D_ref = score_candidates(task, train, ref['S'].to(G), torch.arange(N), 64, 'jvp', False).T
        t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0
    else:
        if sk_p.exists(): sk, t_sk, c_sk = torch.load(sk_p, weights_only=False); log('sketch loaded')
        else:
            c0, t0 = time.process_time(), time.perf_counter()
            sk = SketchSelector.build(task, train, dim=dims[0], damping=lam, batch_size=16, also_dot=ref['S'], progress=False)
            t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0
            torch.save((sk, t_sk, c_sk), sk_p)
        D_ref = sk.dots_.T                       # [m, N] g_i·s_test (influence = −D)
    I_ref = -D_ref
    log(f'gradient pass + sketch: {t_sk:.0f} s wall, {c_sk:.0f} CPU s')
    # ---- selectors
    kmax = max(KS)
    sel, times = {}, {}
    t0 = time.perf_counter(); index = FeatureIndex.build(F_tr, kind='flat', progress=False); times['L2 kNN on [CLS] states (paper)'] = (time.perf_counter() - t0 + t_feat, None)
    t0 = time.perf_counter(); sel['L2 kNN on [CLS] states (paper)'] = index.search(F_po[qi], kmax)[1]; times['L2 kNN on [CLS] states (paper)'] += (time.perf_counter() - t0,)
    for hl in sorted({0.01, lam}):
        name = f'HeadSelector (classifier, λ={hl:.3g})'
        t0 = time.perf_counter(); hs = HeadSelector.from_features(X_tr, P_tr, y_tr, damping=hl, weight_decay=wd); tb = time.perf_counter() - t0
        t0 = time.perf_counter(); sel[name] = hs.search((X_po[qi], P_po[qi], y_po[qi]), kmax).numpy(); times[name] = (tb + t_feat, None, time.perf_counter() - t0)
        if hl == lam: hs_main, I_head = hs, hs.influence((X_po[qi], P_po[qi], y_po[qi]))
    if sk is not None:
        name = f'SketchSelector (count sketch {dims[0]}, GGN, λ={lam:.3g})'
        t0 = time.perf_counter(); I_sk = sk.influence(test, task); sel[name] = I_sk.abs().topk(kmax, dim=1).indices.numpy(); times[name] = (t_sk, c_sk, time.perf_counter() - t0)
    r = np.random.default_rng(0); sel['random'] = np.stack([r.permutation(N)[:kmax] for _ in qi])
    times['random'] = (0.0, None, 0.0)
    # |r_i| alone (query-independent): how much is just "the training points the model fits worst"
    name = 'largest training residual ‖p − e_y‖ (query-independent)'
    R = (P_tr - torch.nn.functional.one_hot(y_tr, P_tr.shape[1]).to(P_tr)).norm(dim=1)
    sel[name] = np.tile(R.topk(kmax).indices.numpy(), (len(qi), 1)); times[name] = (t_feat, None, 0.0)
    curves = {k: recall_curve(v, I_ref.numpy(), KS, MS) for k, v in sel.items()}
    pear = lambda x, y: float(np.corrcoef(x, y)[0, 1])
    corr = {'HeadSelector': np.mean([pear(I_head[j].numpy(), I_ref[j].numpy()) for j in range(len(qi))]),
            **({'SketchSelector': np.mean([pear(I_sk[j].numpy(), I_ref[j].numpy()) for j in range(len(qi))])} if sk is not None else {})}
    log('Pearson vs reference over all N:', corr)
    for k, c in curves.items(): log(k, {m: c[m].mean(1).round(3).tolist() for m in MS})
    write(a, out, desc, task, N, len(hset), qi, ref, lam, t_sk, c_sk, curves, times, corr, load0, t_start)

def write(a, out, desc, task, N, nh, qi, ref, lam, t_sk, c_sk, curves, times, corr, load0, t_start):
    load1 = os.getloadavg()
    L = ['# Candidate selection vs a converged reference\n',
         f'{desc} (the model is not retrained); influence parameters: {task.n_params:,} (encoder layer 5 + pooler + classifier, '
         f'`ClsTop`); objective: mean cross-entropy + weight decay {task.weight_decay} (the fine-tune\'s); {len(qi)} dev-matched '
         f'queries (seeded order, the first 3 the model gets right and the first 3 it gets wrong; gold labels). torch '
         f'{torch.__version__}, 1 thread, `nice -n 10`, {os.cpu_count()}-core machine shared with other jobs (load {load0[0]:.1f} '
         f'at start, {load1[0]:.1f} at end; total wall {time.perf_counter() - t_start:.0f} s).\n',
         f'**Reference**: `BlockCG(damping=\'auto\', tol={a.tol:g})` on the Hessian over '
         + (f'all {N:,} training pairs' if nh == N else f'a random {nh:,} (seed 0) of the {N:,} training pairs (a documented subsample: '
            f'one float32 data pass with 6 right-hand sides over all {N:,} costs ≈ 53 CPU s here, and the 2 cores are shared)')
         + f'; every one of the {N:,} training pairs scored with its exact gradient. Damping chosen by \'auto\': λ_min ≈ '
         f'{ref["lambda_min"]:.4f} (Lanczos, {ref["fit_passes"]} single-vector passes'
         + (f' over a seeded {a.fit_size:,}, as `default_solver`' if a.fit_size else '') + f') → λ = {lam:.4f} (on top of the 2·wd = '
         f'{2 * task.weight_decay:g} inside H). {ref["iters"]} block iterations; true relative residual ‖(H+λI)s−g‖/‖g‖ per query: '
         + ', '.join(f'{x:.1e}' for x in ref['residual']) + f'. Time: fit {ref["t_fit"]:.0f} s wall ({ref["c_fit"]:.0f} CPU s), solve '
         f'for all 6 queries {ref["t_solve"]:.0f} s wall ({ref["c_solve"]:.0f} CPU s), i.e. {ref["t_solve"] / len(qi):.0f} s per query; '
         + (f'scoring all N: one JVP pass, {t_sk:.0f} s wall, {c_sk:.0f} CPU s.\n' if a.no_sketch else f'scoring all N: one pass of per-example gradients ({t_sk:.0f} s wall, {c_sk:.0f} CPU s), shared with the SketchSelector build.\n'),
         'R@m = fraction of the reference\'s top-m |influence| training points among the selector\'s k candidates (mean over the '
         'queries; per query for the middle k and m = 100).\n',
         '| selector | ' + ' | '.join(f'R@{m} k={k}' for m in MS for k in KS) + f' | per query k={KS[1]}, m=100 | build (s) | search, all queries (s) |',
         '|---|---|---|---|---|---|---|---|---|---|']
    for name, c in curves.items():
        tb, cb, ts = times[name]
        cells = [f'{c[m][i].mean():.2f}' for m in MS for i in range(len(KS))]
        per = ', '.join(f'{x:.2f}' for x in c[100][1])
        L.append(f'| {name} | ' + ' | '.join(cells) + f' | {per} | {tb:.1f} | {ts:.2f} |')
    L.append(f'| random (expected) | ' + ' | '.join(f'{min(k, N) / N:.2f}' for _ in MS for k in KS) + ' | – | – | – |')
    L.append('')
    L.append(f'Pearson of the selectors\' own scores with the reference over all N (they are selectors, not scores): '
             + ', '.join(f'{k} {v:.3f}' for k, v in corr.items()) + '.')
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text('\n'.join(L) + '\n'); print('\n'.join(L), flush=True)

if __name__ == '__main__': main()
