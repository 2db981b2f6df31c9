"""FastIF §6.3 error correction on the cached MiniLM models: HANS-style slices, ANLI and Amazon reviews, with the training
data (Fig. 6a/7) and with new data (Fig. 6b/7c). Writes benchmarks/results/apps_correct.md, apps_correct_<study>.csv/json
and figures. Run one study at a time:  python benchmarks/apps_correct.py hans [--iterations 10 --seeds 0 1 2 --lrs 1e-4 1e-2]
"""
import argparse, json, time, sys
from pathlib import Path
import numpy as np, pandas as pd, torch
from fastif_nb.data import load_mnli, load_anli, load_amazon, hans_dataset, AMAZON_LABELS
from fastif_nb.hans import generate_hans, HANS_SUBCASES
from fastif_nb.model import CachedDataset, cache_prefix, load_classifier
from fastif_nb.text import tokenize
from fastif_nb.finetune import train_or_load, finetune, default_cache_dir
from fastif_nb.solvers import CG
from fastif_nb.hvp import data_hvp
from fastif_nb.apps.correct import head_dataset, head_task, evaluate_task, compare_strategies, summarize, plot_history, anchor_influence

RES = Path(__file__).parent/'results'
HEURISTICS = ('lexical_overlap', 'subsequence', 'constituent')

def cached_head(model, name:str, make, tok=None):
    "Head dataset of `make()` under `model`, kept on disk (the encoder runs once per model and dataset)."
    folder = default_cache_dir()/'apps_correct'; folder.mkdir(parents=True, exist_ok=True)
    f = folder/f"{getattr(model, '_fastif_name', 'model')}-{name}.pt"
    if f.exists():
        d = torch.load(f)
        return CachedDataset(list(d['h'].unsqueeze(1)), d['y'], d['n'])
    ds = make()
    hd = head_dataset(model, ds, tok) if not isinstance(ds, CachedDataset) else head_dataset(model, ds)
    torch.save(dict(h=torch.cat(hd.hidden_states), y=hd.labels, n=hd.n_frozen_layers), f)
    return hd

def feats(hd): return torch.cat(hd.hidden_states).numpy()

def eig_extremes(task, train, tol=1e-3):
    "Largest and smallest eigenvalue of the training-objective Hessian H (Lanczos, scipy eigsh)."
    from scipy.sparse.linalg import LinearOperator, eigsh
    mv = lambda x: data_hvp(task, train, torch.as_tensor(x, dtype=torch.float32).reshape(-1), 4096).double().numpy()
    op = LinearOperator((task.n_params,) * 2, matvec=mv, dtype=np.float64)
    top = eigsh(op, k=1, which='LA', tol=tol, return_eigenvectors=False)[0]
    low = eigsh(op, k=1, which='SA', tol=tol, return_eigenvectors=False)[0]
    return float(top), float(low)

def choose_damping(lam_min:float, floor:float=0.01)->float:
    "The paper-scale damping 0.01 if H is positive definite, else twice the most negative eigenvalue's magnitude."
    return max(floor, 2 * abs(lam_min)) if lam_min < 0 else floor

def lissa_vs_cg(task, train, valid, pool, cg, k_feats, n_anchors=10, seeds=(0, 1, 2), k=1000):
    "Pearson of fast LiSSA (J=1000, B=1) vs the CG influence on the kNN candidates of each seed's first anchor batch."
    from fastif_nb.fastif import fast_lissa
    from fastif_nb.knn import FeatureIndex
    idx, out = FeatureIndex.build(k_feats[0], progress=False), []
    for seed in seeds:
        a = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed))[:n_anchors]
        anchors = torch.utils.data.Subset(valid, a.tolist())
        cand = torch.as_tensor(idx.search_mean(k_feats[1][a.numpy()], min(k, len(pool)))[1])
        s_cg = anchor_influence(task, train, anchors, pool, cg, cand)[0]
        s_li = anchor_influence(task, train, anchors, pool, fast_lissa(damping=cg.damping, seed=seed), cand)[0]
        out.append(float(np.corrcoef(s_cg.numpy(), s_li.numpy())[0, 1]))
    return out

def run_setting(name, task, train, slices, pool=None, lrs=(1e-4,), seeds=(0, 1, 2), iterations=10, n=10, damping=0.01,
                k=1000, pool_feats=None):
    "compare_strategies on every slice; histories stacked with a `slice` column."
    solver = CG(damping=damping, tol=1e-5, maxiter=500)
    out = []
    for sl, (valid, test) in slices.items():
        t0 = time.process_time()
        h = compare_strategies(task, train, valid, test, pool, seeds=seeds, lrs=lrs, solver=solver, iterations=iterations,
                               n_anchors=n, n_points=n, k=k, pool_features=feats(train if pool is None else pool) if pool_feats is None else pool_feats,
                               valid_features=feats(valid), progress=False)
        h.insert(0, 'slice', sl); out.append(h)
        print(f"{name}/{sl}: {time.process_time() - t0:.0f} CPU s", flush=True)
        print(summarize(h).round(4).to_string(), flush=True)
    return pd.concat(out, ignore_index=True)

def hans_slices(seed_valid=101, seed_test=202, n_valid=10, n_test=30):
    "Per heuristic: a validation and a test split generated with different seeds, test rows overlapping valid removed."
    out = {}
    for h in HEURISTICS:
        subs = [s for s, c in HANS_SUBCASES.items() if c.heuristic == h]
        v, t = generate_hans(n_valid, seed_valid, subs), generate_hans(n_test, seed_test, subs)
        seen = set(zip(v.sentence1, v.sentence2))
        t = t[[(a, b) not in seen for a, b in zip(t.sentence1, t.sentence2)]]
        out[h] = (hans_dataset(v, name=f'HANS-style {h} valid'), hans_dataset(t, name=f'HANS-style {h} test'))
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('study', choices=['hans', 'anli', 'amazon', 'hans_new', 'anli_new'])
    ap.add_argument('--iterations', type=int, default=10); ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--lrs', type=float, nargs='+', default=[1e-4]); ap.add_argument('--slices', nargs='+', default=None)
    ap.add_argument('--tag', default='')
    a = ap.parse_args()
    t_start, meta = time.process_time(), dict(study=a.study, iterations=a.iterations, seeds=a.seeds, lrs=a.lrs)
    if a.study in ('hans', 'hans_new'):
        model, tok, info = train_or_load(num_labels=2, progress=False); model._fastif_name = Path(info['folder']).name
        train = cached_head(model, 'mnli-train', lambda: load_mnli('train', 2), tok)
        raw = hans_slices()
        slices = {h: (cached_head(model, f'hans-{h}-valid101', lambda v=v: v, tok), cached_head(model, f'hans-{h}-test202', lambda t=t: t, tok))
                  for h, (v, t) in raw.items()}
        if a.slices: slices = {k: v for k, v in slices.items() if k in a.slices}
        meta.update(model=info['folder'], dev_accuracy=info['dev_accuracy'], n_train=len(train),
                    slices={h: [len(v), len(t)] for h, (v, t) in slices.items()})
        pool = None
        if a.study == 'hans_new':
            df = generate_hans(10, 303)  # 300 rows over all 30 subcases, seeds disjoint from valid/test
            seen = {(x, y) for v, t in raw.values() for d in (v, t) for x, y in zip(d.texts_a, d.texts_b)}
            df = df[[(x, y) not in seen for x, y in zip(df.sentence1, df.sentence2)]]
            pool = cached_head(model, f'hans-pool303-{len(df)}', lambda: hans_dataset(df, name='HANS-style pool'), tok)
            meta['pool'] = len(pool)
    elif a.study in ('anli', 'anli_new'):
        model, tok, info = train_or_load(num_labels=3, progress=False); model._fastif_name = Path(info['folder']).name
        train = cached_head(model, 'mnli-train', lambda: load_mnli('train', 3), tok)
        def anli():
            ds = [load_anli(r) for r in (1, 2, 3)]
            from fastif_nb.data import TextPairDataset
            return TextPairDataset(sum((d.texts_a for d in ds), []), sum((d.texts_b for d in ds), []),
                                   [d.label_names[l] for d in ds for l in d.labels], ds[0].label_names, name='ANLI R1-R3 dev')
        allh = cached_head(model, 'anli-r123-dev', anli, tok)
        perm = torch.randperm(len(allh), generator=torch.Generator().manual_seed(0)).tolist()
        parts = dict(valid=perm[:600], test=perm[600:1800], pool=perm[1800:])
        sub = lambda ix: CachedDataset([allh.hidden_states[i] for i in ix], allh.labels[ix], allh.n_frozen_layers)
        slices = {'ANLI': (sub(parts['valid']), sub(parts['test']))}
        pool = sub(parts['pool']) if a.study == 'anli_new' else None
        meta.update(model=info['folder'], dev_accuracy=info['dev_accuracy'], n_train=len(train), anli_split={k: len(v) for k, v in parts.items()})
    else:  # amazon: a 5-class top trained on the 1,000 dev reviews (finetune recipe on the cached prefix), evaluated on test
        model, tok = load_classifier(None, 5, AMAZON_LABELS)
        dev, tst = [cache_prefix(model, tokenize(load_amazon(s), tok, 128), 5, progress=False) for s in ('dev', 'test')]
        t0 = time.process_time()
        model, log = finetune(model, dev, epochs=4, lr=5e-4, weight_decay=0.005, progress=False)
        model._fastif_name = 'amazon5-top-e4'
        train, test_all = head_dataset(model, dev), head_dataset(model, tst)
        perm = torch.randperm(len(test_all), generator=torch.Generator().manual_seed(0)).tolist()
        sub = lambda ix: CachedDataset([test_all.hidden_states[i] for i in ix], test_all.labels[ix], test_all.n_frozen_layers)
        slices = {'Amazon': (sub(perm[:300]), sub(perm[300:]))}
        pool = None
        meta.update(finetune_cpu_s=time.process_time() - t0, train_accuracy=evaluate_task(head_task(model), train)[0], n_train=len(train))
    task = head_task(model)
    meta['n_params'] = task.n_params
    t0 = time.process_time()
    top, low = eig_extremes(task, train)
    damping = choose_damping(low)
    meta.update(lambda_max=top, lambda_min=low, damping=damping, eig_cpu_s=time.process_time() - t0)
    print(json.dumps(meta), flush=True)
    n = 50 if a.study == 'amazon' else 10
    hist = run_setting(a.study, task, train, slices, pool, a.lrs, a.seeds, a.iterations, n, damping)
    if a.study in ('hans', 'anli'):
        v, _ = next(iter(slices.values()))
        meta['lissa_vs_cg_pearson'] = lissa_vs_cg(task, train, v, train if pool is None else pool, CG(damping=damping, tol=1e-5, maxiter=500),
                                                  (feats(train if pool is None else pool), feats(v)), n, a.seeds)
    meta['cpu_s'] = time.process_time() - t_start
    meta['residual_max'] = float(hist.residual.max()) if 'residual' in hist else None
    RES.mkdir(exist_ok=True)
    stem = f"apps_correct_{a.study}{a.tag}"
    hist.to_csv(RES/f"{stem}.csv", index=False)
    (RES/f"{stem}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)

if __name__ == '__main__': main()
