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
from fastif_nb.solvers import CG, Exact
from fastif_nb.hvp import data_hvp
from fastif_nb.apps.correct import (head_dataset, head_task, evaluate_task, compare_strategies, summarize, plot_history,
                                    anchor_influence, pooled_dataset, classifier_task)

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

def eig_extremes(task, train):
    "Smallest and largest eigenvalue of the dense training-objective Hessian H (the `Exact` solver's matrix)."
    ev = torch.linalg.eigvalsh(Exact().hessian(task, train).double())
    return float(ev.max()), float(ev.min())

def lissa_vs_exact(task, train, valid, pool, exact, k_feats, n_anchors=10, seeds=(0, 1, 2), k=1000):
    "Pearson of fast LiSSA (J=1000, B=1) vs the Exact influence on the kNN candidates of each seed's first anchor batch."
    from fastif_nb.fastif import fast_lissa
    from fastif_nb.knn import FeatureIndex
    idx, out = FeatureIndex.build(k_feats[0], progress=False), []
    for seed in seeds:
        a = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed))[:n_anchors]
        anchors = torch.utils.data.Subset(valid, a.tolist())
        cand = torch.as_tensor(idx.search_mean(k_feats[1][a.numpy()], min(k, len(pool)))[1])
        s_cg = anchor_influence(task, train, anchors, pool, exact, cand)[0]
        s_li = anchor_influence(task, train, anchors, pool, fast_lissa(damping=exact.damping, seed=seed), cand)[0]
        out.append(float(np.corrcoef(s_cg.numpy(), s_li.numpy())[0, 1]))
    return out

def run_setting(name, model, train, slices, pool=None, lrs=(1e-4,), seeds=(0, 1, 2), iterations=10, n=10, damping=0.01, k=1000):
    "compare_strategies on every slice (classifier task, converged CG); histories stacked with a `slice` column."
    task, P = classifier_task(model), lambda hd: pooled_dataset(model, hd)
    trainp, poolp, out = P(train), None if pool is None else P(pool), []
    for sl, (valid, test) in slices.items():
        t0 = time.process_time()
        h = compare_strategies(task, trainp, P(valid), P(test), poolp, seeds=seeds, lrs=lrs, solver=CG(damping=damping, tol=1e-6, maxiter=300),
                               iterations=iterations, n_anchors=n, n_points=n, k=k,
                               pool_features=feats(train if pool is None else pool), valid_features=feats(valid), progress=False)
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

TITLES = dict(hans='Setting 1, MNLI → MNLI → HANS-style (2-label model, pool = the 8,999 MNLI training pairs)',
              anli='Setting 1, MNLI → MNLI → ANLI (3-label model, pool = the MNLI training pairs)',
              amazon='Setting 1, Amazon → Amazon → Amazon (5-class model, pool = its 1,000 training reviews)',
              hans_new='Setting 2, MNLI → HANS-style → HANS-style (pool = new HANS-style pairs, unseen in training)',
              anli_new='Setting 2, MNLI → ANLI → ANLI (pool = ANLI pairs held out from anchors and evaluation)')

def figure(hist, study, lr):
    "Accuracy and loss per iteration (mean, min/max band) for every slice at `lr`, as FastIF Fig. 6."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    sl = list(dict.fromkeys(hist['slice']))
    fig, axs = plt.subplots(2, len(sl), figsize=(4.2 * len(sl), 6), squeeze=False)
    for j, s in enumerate(sl):
        for i, m in enumerate(('accuracy', 'loss')): plot_history(hist[hist['slice'] == s], m, lr, axs[i, j], f'{s}, lr={lr:g}')
    fig.tight_layout(); return fig

def gains(hist):
    "Accuracy change after the last iteration, per slice × lr × strategy (mean over seeds), and helpful − z-test."
    last = hist.iteration.max()
    a = hist[hist.iteration == last].groupby(['slice', 'lr', 'strategy']).accuracy.mean().unstack()
    b = hist[hist.iteration == 0].groupby(['slice', 'lr', 'strategy']).accuracy.mean().unstack()
    d = (a - b) * 100
    d['helpful − z-test'] = d['helpful'] - d['anchors'] if 'anchors' in d else np.nan
    return d.round(2)

def report():
    "Gather every study's results into apps_correct.md and figures."
    lines = ['# FastIF §6.3 error correction on the cached MiniLM models', '',
             'Produced by `benchmarks/apps_correct.py` (one study per call, then `report`). Influence and the gradient steps are',
             'taken over the classifier layer on the pooled features (multinomial L2 logistic regression, convex), with conjugate',
             'gradients on the full training objective (damping 0.01, tol 1e-6; the dense Hessian gives λ_min, λ_max); every solve\'s relative residual',
             '‖(H+λI)s−v‖/‖v‖ is measured with one more full-data HVP. kNN: 1,000 nearest pool points to the mean final-[CLS]',
             'feature of the anchors. Strategies: 10 most helpful / harmful / random pool points, or the anchors ("z-test").',
             'Accuracy in %, Δ = after the last iteration − before, mean over seeds; min/max over seeds in the CSV/figures.', '']
    for study in TITLES:
        f = RES/f'apps_correct_{study}.csv'
        if not f.exists(): continue
        hist, meta = pd.read_csv(f), json.loads((RES/f'apps_correct_{study}.json').read_text())
        lines += [f'## {TITLES[study]}', '', '```', json.dumps({k: v for k, v in meta.items()}, indent=None), '```', '']
        lines += ['Accuracy change Δ (points, mean over seeds):', '', gains(hist).to_markdown(), '']
        t = pd.concat({sl: summarize(g) for sl, g in hist.groupby('slice')}, names=['slice']).droplevel(1).reset_index()
        lines += ['Before/after (accuracy as a fraction, loss = mean cross-entropy on the test split):', '', t.round(4).to_markdown(index=False), '']
        for lr in sorted(hist.lr.unique()):
            fig = figure(hist, study, lr); name = f'apps_correct_{study}_lr{lr:g}.png'
            fig.savefig(RES/name, dpi=90); lines += [f'![{study} lr={lr:g}]({name})', '']
    g = RES/'apps_correct_hans_lrgrid.csv'
    if g.exists():
        hist = pd.read_csv(g)
        lines += ['## Learning-rate grid (HANS-style lexical overlap, seed 0, 10 iterations)', '',
                  'lr 1e-4: apps_correct_lr1e-4_probe.log (2 iterations: nothing moves); lr 0.1: the main study above.', '',
                  gains(hist).to_markdown(), '', summarize(hist).round(4).to_markdown(index=False), '']
    lines += ['## Reading', '',
              'Loss: on every HANS-style slice and on ANLI the ordering influence predicts holds — most harmful raises the test',
              'loss several times more than random points, most helpful lowers it about as much as fine-tuning on the anchors',
              '(z-test), more with the new-data pools on lexical overlap (−0.056 vs −0.022) and ANLI (−0.046 vs −0.022). Accuracy:',
              "the paper's gains (+5.8 points on HANS, +2.5 over z-test; +2.8 / +1.7 over the anchors with new data) do not",
              'reproduce beyond noise (one test pair = 0.33 / 0.25 points; harmful points sometimes raise accuracy). On Amazon, lr',
              '0.1 with 50 points leaves the first-order regime: the influence-selected steps hurt (−12.2 / −20.0 points), lr 1e-4',
              'moves nothing. Causes: weak models (66.5 % / 48.0 % MNLI dev-matched), only the classifier layer moves, an 8,999-pair',
              'pool, lr grid limited by a 2-core CPU shared by 7 sessions. Full readings: nbs/12_correct.ipynb, nbs/12a_correct_new.ipynb.',
              'lr 1e-4 on the HANS-style lexical-overlap slice (seed 0, 2 iterations): apps_correct_lr1e-4_probe.log.', '']
    (RES/'apps_correct.md').write_text('\n'.join(lines) + '\n')

def main():
    if sys.argv[1:] == ['report']: return report()
    ap = argparse.ArgumentParser()
    ap.add_argument('study', choices=['hans', 'anli', 'amazon', 'hans_new', 'anli_new'])
    ap.add_argument('--iterations', type=int, default=10); ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--lrs', type=float, nargs='+', default=[1e-4]); ap.add_argument('--slices', nargs='+', default=None)
    ap.add_argument('--tag', default=''); ap.add_argument('--hans-pool', type=int, default=10)
    ap.add_argument('--anli-rounds', type=int, nargs='+', default=[1, 2, 3])
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
            df = generate_hans(a.hans_pool, 303)  # over all 30 subcases, a seed disjoint from valid/test
            seen = {(x, y) for v, t in raw.values() for d in (v, t) for x, y in zip(d.texts_a, d.texts_b)}
            df = df[[(x, y) not in seen for x, y in zip(df.sentence1, df.sentence2)]]
            pool = cached_head(model, f'hans-pool303-{len(df)}', lambda: hans_dataset(df, name='HANS-style pool'), tok)
            meta['pool'] = len(pool)
    elif a.study in ('anli', 'anli_new'):
        model, tok, info = train_or_load(num_labels=3, progress=False); model._fastif_name = Path(info['folder']).name
        train = cached_head(model, 'mnli-train', lambda: load_mnli('train', 3), tok)
        def anli():
            ds = [load_anli(r) for r in a.anli_rounds]
            from fastif_nb.data import TextPairDataset
            return TextPairDataset(sum((d.texts_a for d in ds), []), sum((d.texts_b for d in ds), []),
                                   [d.label_names[l] for d in ds for l in d.labels], ds[0].label_names, name='ANLI dev')
        allh = cached_head(model, 'anli-r' + ''.join(map(str, a.anli_rounds)) + '-dev', anli, tok)
        perm = torch.randperm(len(allh), generator=torch.Generator().manual_seed(0)).tolist()
        nv, nt = int(0.2 * len(perm)), int(0.4 * len(perm))  # 20% anchors' validation split, 40% test, the rest the new-data pool
        parts = dict(valid=perm[:nv], test=perm[nv:nv + nt], pool=perm[nv + nt:])
        sub = lambda ix: CachedDataset([allh.hidden_states[i] for i in ix], allh.labels[ix], allh.n_frozen_layers)
        slices = {'ANLI': (sub(parts['valid']), sub(parts['test']))}
        pool = sub(parts['pool']) if a.study == 'anli_new' else None
        meta.update(model=info['folder'], dev_accuracy=info['dev_accuracy'], n_train=len(train), anli_split={k: len(v) for k, v in parts.items()}, anli_rounds=a.anli_rounds)
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
        meta.update(finetune_cpu_s=time.process_time() - t0, n_train=len(train))
    task, trainp = classifier_task(model), pooled_dataset(model, train)
    meta['n_params'] = task.n_params
    meta['train_accuracy'] = evaluate_task(task, trainp)[0]
    t0 = time.process_time()
    top, low = eig_extremes(task, trainp)
    damping = 0.01  # H is PSD (convex); its smallest eigenvalue is the flat softmax-shift direction of the bias
    meta.update(lambda_max=top, lambda_min=low, damping=damping, eig_cpu_s=time.process_time() - t0)
    print(json.dumps(meta), flush=True)
    n = 50 if a.study == 'amazon' else 10
    hist = run_setting(a.study, model, train, slices, pool, a.lrs, a.seeds, a.iterations, n, damping)
    v, _ = next(iter(slices.values()))
    meta['lissa_vs_exact_pearson'] = lissa_vs_exact(task, trainp, pooled_dataset(model, v),
                                                    trainp if pool is None else pooled_dataset(model, pool), Exact(damping=damping),
                                                    (feats(train if pool is None else pool), feats(v)), n, a.seeds)
    meta['cpu_s'] = time.process_time() - t_start
    meta['residual_max'] = float(hist.residual.max()) if 'residual' in hist else None
    RES.mkdir(exist_ok=True)
    stem = f"apps_correct_{a.study}{a.tag}"
    hist.to_csv(RES/f"{stem}.csv", index=False)
    (RES/f"{stem}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)

if __name__ == '__main__': main()
