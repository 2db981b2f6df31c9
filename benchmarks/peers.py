"""Peers benchmark: fastif_nb's solvers vs pyDVL and kronfluence on one problem, against a converged reference.

Setup:  bash benchmarks/peers_env.sh            # /tmp/peers-venv with pydvl + kronfluence (torch 2.13.0 pinned)
Run:    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 10 /tmp/peers-venv/bin/python benchmarks/peers.py [options]
        -> benchmarks/results/peers.md   (--smoke: tiny random BERT in seconds, written to /tmp)
Options: --queries 3 --n-hessian 1000 --damping 0.25 --ref-tol 1e-6 --methods ... (see --help)

The problem (identical for every method):
- model: the cached fine-tuned 2-label MiniLM (`train_or_load(num_labels=2)`), influence parameters = encoder layer 5 +
  pooler + classifier (1.92M), on cached prefix states of the 8,999 bundled MNLI training pairs;
- objective: mean cross-entropy over the Hessian set (weight_decay = 0, so pyDVL/kronfluence, which know no decay term,
  see the same H), damping λ added to H for every method (--damping is the *total*);
- Hessian set: all N training pairs, or a random subsample of --n-hessian of them (stated in the output) when the CPU
  cannot afford full-data passes; every training pair (all N) is scored;
- queries: the first --queries dev-matched pairs, with their gold labels;
- scores: D[i, j] = ∇ℓ(z_i)·s_j, s_j = (H+λI)⁻¹∇ℓ(z_test_j); influence = −D. Metrics per query vs the reference, averaged:
  Pearson, Spearman, overlap of the top-100 |D| sets. Every s has its relative residual ‖(H+λI)s−g‖/‖g‖ (one float32
  data pass, computed outside the timed region).
- reference: BlockCG in float64 (a float64 copy of the top), relative residual ≤ --ref-tol.
Times: wall seconds of the s_test computation (+ fit where a method has one) and, separately, of scoring all N.
"""
import argparse, copy, os, sys, time, tempfile, warnings, logging
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RESULTS = Path(__file__).parent / 'results'

# ---------------------------------------------------------------- problem
def _items(ds, idx): return [ds[int(i)] for i in idx]

class Sub(torch.utils.data.Dataset):
    "A subset view of a CachedDataset (same collate)."
    def __init__(self, ds, idx): self.ds, self.idx = ds, [int(i) for i in idx]
    def __len__(self): return len(self.idx)
    def __getitem__(self, i): return self.ds[self.idx[i]]
    def collate(self, items): return self.ds.collate(items)

def setup_real(a):
    from fastif_nb.finetune import train_or_load
    from fastif_nb.model import cache_prefix, DEFAULT_FROZEN
    from fastif_nb.data import load_mnli
    from fastif_nb.text import tokenize
    model, tok, _ = train_or_load(num_labels=2, progress=False)
    texts = load_mnli('train', num_labels=2)
    n = a.n_train if 0 < a.n_train < len(texts) else len(texts)
    idx = sorted(torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:n].tolist()) if n < len(texts) else range(n)
    cache = Path(tempfile.gettempdir()) / f'fastif_peers_train_cache_{n}.pt'
    if cache.exists(): train = torch.load(cache, weights_only=False)
    else:
        train = cache_prefix(model, tokenize(texts.subset(idx), tok, max_length=128), DEFAULT_FROZEN, progress=False)
        train.source = None; torch.save(train, cache)
    dev = load_mnli('dev_matched', num_labels=2).subset(range(a.queries))
    test = cache_prefix(model, tokenize(dev, tok, max_length=128), DEFAULT_FROZEN, progress=False)
    what = 'all 8,999' if n == len(texts) else f'a random {n:,} (seed 0) of the 8,999'
    return model, DEFAULT_FROZEN, train, test, f'fine-tuned 2-label MiniLM (cached), {what} bundled MNLI training pairs as the training set'

def setup_smoke(a):
    from transformers import BertConfig, BertForSequenceClassification
    from fastif_nb.model import CachedDataset
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=100,
                     num_labels=2, attn_implementation='eager')
    model = BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(0)
    mk = lambda n: CachedDataset([torch.randn(int(torch.randint(3, 12, (1,), generator=g)), 32, generator=g) for _ in range(n)],
                                 torch.randint(2, (n,), generator=g), 1)
    return model, 1, mk(300), mk(a.queries), 'SMOKE: tiny random BERT, 300 random cached items'

# ---------------------------------------------------------------- helpers
def pearson(a, b): a, b = a - a.mean(), b - b.mean(); return float((a @ b) / (a.norm() * b.norm()))
def spearman(a, b):
    r = lambda x: torch.empty_like(x).index_copy_(0, torch.argsort(x), torch.arange(len(x), dtype=x.dtype))
    return pearson(r(a), r(b))
def top_overlap(a, b, k=100):
    k = min(k, len(a)); return len(set(a.abs().topk(k).indices.tolist()) & set(b.abs().topk(k).indices.tolist())) / k

class Packed(nn.Module):
    "A top as a one-tensor model for pyDVL/kronfluence: x = [hidden_states | attention_mask] of shape [B, L, d+1]."
    def __init__(self, top): super().__init__(); self.top = top
    def forward(self, x): return self.top(hidden_states=x[..., :-1], attention_mask=x[..., -1].long()).logits

class PackedData(torch.utils.data.Dataset):
    def __init__(self, ds): self.ds = ds
    def __len__(self): return len(self.ds)
    def __getitem__(self, i): return self.ds[i]
class PaddedData(torch.utils.data.Dataset):
    "Items as fixed-size (x [Lmax, d+1], y): pyDVL's LiSSA rebuilds its DataLoader without our collate_fn."
    def __init__(self, ds):
        self.ds, self.L = ds, max(int(ds[i]['hidden_states'].shape[0]) for i in range(len(ds)))
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        x, y = packed_collate([self.ds[i]])
        return F.pad(x[0], (0, 0, 0, self.L - x.shape[1])), y[0]

def packed_collate(items):
    from fastif_nb.model import cached_collate
    b = cached_collate(items)
    return torch.cat([b['hidden_states'], b['attention_mask'][..., None].to(b['hidden_states'].dtype)], -1), b['labels']

def residuals(task, hset, S, G, lam):
    "‖(H+λI)s−g‖/‖g‖ per column, one float32 data pass."
    from fastif_nb.hvp import data_hvp
    R = data_hvp(task, hset, S.to(G), 256) + lam * S.to(G) - G
    return (R.norm(dim=0) / G.norm(dim=0)).tolist()

# ---------------------------------------------------------------- methods: each returns (S [p, m] or D [N, m], fit s, solve s, note)
def m_blockcg(ctx, tol=1e-3, rank=0, dtype=torch.float32):
    from fastif_nb.blockcg import BlockCG
    task = ctx['task'] if dtype == torch.float32 else ctx['task64']
    s = BlockCG(damping=ctx['lam'], tol=tol, rank=rank, maxiter=1000, batch_size=256, progress=False)
    t0 = time.perf_counter(); s.fit(task, ctx['hset64' if dtype == torch.float64 else 'hset']); t1 = time.perf_counter()
    S = s.solve(task, ctx['hset64' if dtype == torch.float64 else 'hset'], ctx['G'].T.to(dtype), progress=False)
    return S, t1 - t0, time.perf_counter() - t1, f'{s.iterations_} block iterations (data passes), own residual {s.residual_:.1e}'

def m_blockcg_sub(ctx, n, tol=1e-3):
    "FastIF's default solve: BlockCG on the Hessian of a seeded random subsample of n training pairs (residual vs the full H)."
    from fastif_nb.blockcg import BlockCG
    N = len(ctx['train'])
    sub = Sub(ctx['train'], torch.randperm(N, generator=torch.Generator().manual_seed(1))[:n].sort().values)
    s = BlockCG(damping=ctx['lam'], tol=tol, maxiter=1000, batch_size=256, progress=False)
    t0 = time.perf_counter(); S = s.solve(ctx['task'], sub, ctx['G'].T, progress=False)
    return S, 0.0, time.perf_counter() - t0, f'{s.iterations_} block iterations over {n:,} pairs, residual on its own Hessian {s.residual_:.1e}'

def knn_candidates(top, train, test, k):
    "L2 kNN (faiss, exact) of each query's [CLS] state of the last layer among the training pairs': [m, k] indices."
    from fastif_nb.knn import FeatureIndex
    def feats(ds):
        out = []
        with torch.no_grad():
            for s in range(0, len(ds), 64):
                b = ds.collate([ds[i] for i in range(s, min(s + 64, len(ds)))])
                out.append(top.hidden(b['hidden_states'], b['attention_mask'])[:, 0].float())
        return torch.cat(out).numpy()
    return torch.as_tensor(FeatureIndex.build(feats(train), progress=False).search(feats(test), k)[1])

def m_reference(ctx, tol):
    "BlockCG in float32 to 1e-4, then block CG on the float64 top from there (iterative refinement) to `tol`."
    from fastif_nb.blockcg import BlockCG, block_cg
    from fastif_nb.hvp import data_hvp
    t0 = time.perf_counter()
    if ctx.get('ref32'):  # float32 all the way (cheaper): BlockCG to `tol`; when it passed 1e-3 is read off its trace
        s = BlockCG(damping=ctx['lam'], tol=tol, maxiter=1000, batch_size=256, progress=False)
        X = s.solve(ctx['task'], ctx['hset'], ctx['G'].T, progress=False); ts = time.perf_counter() - t0
        k3 = int((s.trace_.max(1).values <= 1e-3).nonzero()[0, 0]) if (s.trace_.max(1).values <= 1e-3).any() else None
        ctx['ref_1e3'] = (k3, None if k3 is None else ts * k3 / s.iterations_)
        return X.double(), 0.0, ts, (f'{s.iterations_} float32 block iterations; all columns below 1e-3 after {k3} '
                                     f'(≈ {ctx["ref_1e3"][1]:.0f} s at the mean pass time)' if k3 else f'{s.iterations_} float32 block iterations')
    s32 = BlockCG(damping=ctx['lam'], tol=1e-4, maxiter=1000, batch_size=256, progress=False)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); X0 = s32.solve(ctx['task'], ctx['hset'], ctx['G'].T, progress=False)
    lam, G64 = ctx['lam'], ctx['G'].T.double()
    X, tr = block_cg(lambda P: data_hvp(ctx['task64'], ctx['hset64'], P, 256) + lam * P, G64, tol=tol, maxiter=1000, X0=X0.double())
    return X, 0.0, time.perf_counter() - t0, f'{s32.iterations_} float32 + {len(tr) - 1} float64 block iterations'

def m_lissa(ctx, depth, B, T, scale):
    from fastif_nb.lissa import LiSSA
    s = LiSSA(depth=depth, batch_size=B, repeats=T, damping=ctx['lam'], scale=scale, seed=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); S = s.solve(ctx['task'], ctx['hset'], ctx['G'].T, progress=False)
    return S, 0.0, time.perf_counter() - t0, f'scale {s.scale_:.3g}'

def m_pydvl(ctx, maxiter=300, B=32):
    from pydvl.influence.torch import LissaInfluence
    logging.getLogger('pydvl').setLevel(logging.ERROR)
    model = Packed(ctx['task'].model)
    data = PaddedData(ctx['hset'])
    loader = torch.utils.data.DataLoader(data, batch_size=B, shuffle=True)
    inf = LissaInfluence(model, F.cross_entropy, regularization=ctx['lam'], maxiter=maxiter, scale=ctx['scale32'], rtol=1e-12)
    t0 = time.perf_counter(); inf = inf.fit(loader); t1 = time.perf_counter()
    x, y = packed_collate(_items(ctx['test'], range(len(ctx['test']))))
    dev = next(model.parameters()).device
    S = inf.influence_factors(x.to(dev), y.to(dev)).T.detach()
    return S, t1 - t0, time.perf_counter() - t1, (f'maxiter {maxiter}, batch {B}, scale {ctx["scale32"]:.3g}; its loader cannot take a '
                                                   f'collate_fn, so items are padded to {data.L} tokens')

def m_kronfluence(ctx, B=32):
    from kronfluence.task import Task
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.utils.dataset import DataLoaderKwargs
    class T(Task):
        def compute_train_loss(self, batch, model, sample=False):
            logits = model(batch[0])
            if sample:
                with torch.no_grad(): y = torch.multinomial(logits.softmax(-1), 1).flatten()
                return F.cross_entropy(logits, y, reduction='sum')
            return F.cross_entropy(logits, batch[1], reduction='sum')
        def compute_measurement(self, batch, model): return F.cross_entropy(model(batch[0]), batch[1], reduction='sum')
        def get_attention_mask(self, batch): return batch[0][..., -1].long()
    model = prepare_model(Packed(copy.deepcopy(ctx['hf_top'])), T())
    out = tempfile.mkdtemp(prefix='kronfluence-')
    an = Analyzer(analysis_name='peers', model=model, task=T(), output_dir=out, disable_model_save=True, disable_tqdm=True)
    dl = DataLoaderKwargs(collate_fn=packed_collate)
    t0 = time.perf_counter()
    an.fit_all_factors(factors_name='ekfac', dataset=PackedData(ctx['hset']), per_device_batch_size=B,
                       factor_args=FactorArguments(strategy='ekfac'), dataloader_kwargs=dl, overwrite_output_dir=True)
    t1 = time.perf_counter()
    an.compute_pairwise_scores(scores_name='s', factors_name='ekfac', query_dataset=PackedData(ctx['test']),
                               train_dataset=PackedData(ctx['train']), per_device_query_batch_size=len(ctx['test']),
                               per_device_train_batch_size=64, score_args=ScoreArguments(damping_factor=ctx['lam']),
                               dataloader_kwargs=dl, overwrite_output_dir=True)
    D = an.load_pairwise_scores('s')['all_modules'].T.float()  # [N, m]: g_trainᵀ (G_ekfac+λ)⁻¹ g_test
    return D, t1 - t0, time.perf_counter() - t1, 'EK-FAC on the Linear layers (LayerNorm parameters not covered); scores all N itself'

# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--smoke', action='store_true'); ap.add_argument('--queries', type=int, default=3)
    ap.add_argument('--n-train', type=int, default=0, help='training-set size (0: all 8,999; the model is not retrained)')
    ap.add_argument('--n-hessian', type=int, default=0, help='Hessian subsample size (0: all training pairs)')
    ap.add_argument('--damping', type=float, default=0.25); ap.add_argument('--ref-tol', type=float, default=1e-6)
    ap.add_argument('--methods', nargs='*', default=['blockcg', 'pydvl', 'faithful_lissa', 'fast_lissa', 'kronfluence'])
    ap.add_argument('--faithful', default='1000,32,1', help='J,B,T of the faithful LiSSA'); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (the model, batches and vectors move there)")
    ap.add_argument('--out', default=None)
    ap.add_argument('--sub-hessian', type=int, default=1000, help="Hessian subsample of the 'blockcg_sub' method (FastIF's default)")
    ap.add_argument('--ref-float32', action='store_true', help='reference in float32 (BlockCG to --ref-tol), no float64 refinement')
    ap.add_argument('--k', type=int, default=1000, help='kNN candidates per query for the on-candidates columns')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    from fastif_nb.task import ClassificationTask
    from fastif_nb.model import split_at
    from fastif_nb.clstop import ClsTop
    from fastif_nb.lissa import LiSSA
    from fastif_nb.influence import query_gradients, score_candidates
    load0, t_start = os.getloadavg(), time.perf_counter()
    model, nf, train, test, desc = (setup_smoke if a.smoke else setup_real)(a)
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / 'peers_smoke.md' if a.smoke else RESULTS / 'peers.md')
    N = len(train)
    hidx = torch.randperm(N, generator=torch.Generator().manual_seed(0))[:a.n_hessian] if 0 < a.n_hessian < N else torch.arange(N)
    hset = Sub(train, hidx.sort().values)
    top = ClsTop(model, nf)
    task = ClassificationTask(top, weight_decay=0.0, collate_fn=train.collate)
    top64 = ClsTop(copy.deepcopy(model).double(), nf)
    task64 = ClassificationTask(top64, weight_decay=0.0, collate_fn=train.collate)
    class D64(Sub):
        def __getitem__(self, i): it = super().__getitem__(i); return {**it, 'hidden_states': it['hidden_states'].double()}
    hset64 = D64(train, hset.idx)
    if a.device != 'cpu':
        for t in (task, task64): t.to(torch.device(a.device))
    G = query_gradients(task, test)  # [m, p]
    lam = a.damping
    probe = LiSSA(batch_size=32, damping=lam, scale='auto', scale_batches=5)
    scale32 = probe.resolve_scale(task, hset)
    ctx = dict(ref32=a.ref_float32, task=task, task64=task64, hset=hset, hset64=hset64, train=train, test=test, G=G, lam=lam, scale32=scale32,
               hf_top=split_at(model, nf)[1])
    print(f'{desc}; Hessian set {len(hset)}; {len(test)} queries; p={task.n_params:,}; λ={lam}; B=32 scale {scale32:.3g}', flush=True)
    score = lambda S: score_candidates(task, train, S.to(G), torch.arange(N), 64, 'jvp', False)
    rows, results = [], {}
    k = min(a.k, N); t0 = time.perf_counter()
    cand = knn_candidates(split_at(model, nf)[1], train, test, k); ctx['t_knn'] = time.perf_counter() - t0
    # reference
    from fastif_nb.task import InfluenceInputError
    while True:
        try: c0 = time.process_time(); S_ref, tf, ts, note = m_reference(ctx, a.ref_tol); cpu_ref = time.process_time() - c0; break
        except InfluenceInputError as e:
            if 'curvature' not in str(e) or ctx['lam'] > 64: raise
            print(f'H + {ctx["lam"]}·I is indefinite on this Hessian set ({e}); doubling the damping for every method', flush=True)
            ctx['lam'] = lam = 2 * ctx['lam']
    t0 = time.perf_counter(); D_ref = score(S_ref); t_score = time.perf_counter() - t0
    res_ref = residuals(task, hset, S_ref.float(), G.T, lam) if a.ref_float32 else residuals(task64, hset64, S_ref, G.T.double(), lam)
    recall = lambda j: len(set(D_ref[:, j].abs().topk(100).indices.tolist()) & set(cand[j].tolist())) / 100
    ctx['knn_recall'] = [recall(j) for j in range(len(test))]
    print(f'kNN k={k}: R@100 of the reference top-100 per query {ctx["knn_recall"]}', flush=True)
    print(f'reference: {ts:.1f} s, {note}, float64 residuals {res_ref}', flush=True)
    results['reference'] = (tf, ts, t_score, res_ref, 1.0, 1.0, 1.0, 1.0, f'BlockCG {"float32" if a.ref_float32 else "float64"} tol {a.ref_tol:g}: {note}; CPU {cpu_ref:.0f} s')
    J, B, T = (int(x) for x in a.faithful.split(','))
    specs = dict(blockcg=('fastif_nb BlockCG (float32, tol 1e-3)', lambda: m_blockcg(ctx, 1e-3)),
                 blockcg_sub=(f'fastif_nb BlockCG (float32, tol 1e-3, Hessian over a random {a.sub_hessian:,})', lambda: m_blockcg_sub(ctx, a.sub_hessian)),
                 fast_lissa=("fastif_nb fast LiSSA (J=300, B=1, T=2, scale='auto')", lambda: m_lissa(ctx, 300, 1, 2, 'auto')),
                 faithful_lissa=(f'fastif_nb LiSSA (J={J}, B={B}, T={T}, fixed scale)', lambda: m_lissa(ctx, J, B, T, scale32)),
                 pydvl=('pyDVL LissaInfluence (maxiter 300, batch 32)', lambda: m_pydvl(ctx)),
                 kronfluence=('kronfluence EK-FAC', lambda: m_kronfluence(ctx)))
    for name in a.methods:
        label, run = specs[name]
        try: c0 = time.process_time(); X, tf, ts, note = run(); note += f'; CPU {time.process_time() - c0:.0f} s'

        except Exception as e:
            print(f'{label}: FAILED {type(e).__name__}: {e}', flush=True); results[label] = None; continue
        if X.shape[0] == N and X.shape[0] != task.n_params:
            D, t_sc, res = X, 0.0, ['n/a (no s_test)'] * len(test)
        else:
            t0 = time.perf_counter(); D = score(X); t_sc = time.perf_counter() - t0
            res = residuals(task, hset, X, G.T, lam)
        m = len(test)
        pr = np.mean([pearson(D[:, j].double(), D_ref[:, j].double()) for j in range(m)])
        sp = np.mean([spearman(D[:, j].double(), D_ref[:, j].double()) for j in range(m)])
        ov = np.mean([top_overlap(D[:, j], D_ref[:, j]) for j in range(m)])
        pk = np.mean([pearson(D[cand[j], j].double(), D_ref[cand[j], j].double()) for j in range(m)])
        results[label] = (tf, ts, t_sc, res, pr, sp, ov, pk, note)
        print(f'{label}: fit {tf:.1f} s, s_test {ts:.1f} s, scoring {t_sc:.1f} s, Pearson {pr:.3f} (on kNN candidates {pk:.3f}), Spearman {sp:.3f}, top-100 {ov:.2f}, '
              f'residuals {res}, {note}', flush=True)
        write(a, out, desc, task, hset, N, test, lam, load0, t_start, results, ctx)
    write(a, out, desc, task, hset, N, test, lam, load0, t_start, results, ctx)

def write(a, out, desc, task, hset, N, test, lam, load0, t_start, results, ctx):
    "Write the table of the methods measured so far."
    load1 = os.getloadavg()
    fmt_res = lambda r: ', '.join(f'{x:.1e}' if isinstance(x, float) else str(x) for x in r)
    lines = ['# Peers benchmark: influence vs a converged reference\n',
             f'{desc}. Influence parameters: {task.n_params:,} (top encoder layer + pooler + classifier, `ClsTop`). '
             f'Hessian over {len(hset):,} training pairs{" (random subsample, seed 0)" if len(hset) < N else ""}; all {N:,} scored; '
             f'{len(test)} dev-matched queries (gold labels). Objective: mean cross-entropy (no decay term); damping λ = {lam} '
             f'for every method. torch {torch.__version__}, device {a.device}' + (f' ({torch.cuda.get_device_name()})' if a.device != 'cpu' else '') + f', {torch.get_num_threads()} thread(s) per process, `nice -n 10`, '
             f'{os.cpu_count()}-core machine (shared with other jobs when load > cores): load average {load0[0]:.1f} at start, {load1[0]:.1f} at end '
             f'(total wall {time.perf_counter() - t_start:.0f} s). Times are wall seconds for all queries together; the CPU seconds of fit + s_test (one thread, this process) are in the notes, and are the better measure on a shared machine. '
             f'"on kNN" = Pearson over each query\'s {a.k:,} L2-kNN candidates ([CLS] states, faiss exact, {ctx["t_knn"]:.0f} s for features + search), '
             f'which keep {np.mean(ctx.get("knn_recall", [float("nan")])):.2f} of the reference\'s top-100 (R@100 per query: '
             f'{", ".join(f"{x:.2f}" for x in ctx.get("knn_recall", []))}).\n',
             '| method | fit (s) | s_test (s) | scoring all N (s) | Pearson | Spearman | top-100 overlap | Pearson on kNN | relative residual per query | notes |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for label, r in results.items():
        if r is None: lines.append(f'| {label} | – | – | – | – | – | – | – | – | failed (see log) |'); continue
        tf, ts, t_sc, res, pr, sp, ov, pk, note = r
        lines.append(f'| {label} | {tf:.1f} | {ts:.1f} | {t_sc:.1f} | {pr:.4f} | {sp:.4f} | {ov:.2f} | {pk:.4f} | {fmt_res(res)} | {note} |')
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text('\n'.join(lines) + '\n'); print('\n'.join(lines), flush=True)

if __name__ == '__main__': main()
