"""Tests of `fastif_nb.apps.correct` (FastIF §6.3 error correction) on an L2 logistic regression and a tiny BERT head."""
import numpy as np, pytest, torch, torch.nn as nn
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.solvers import CG, Exact
from fastif_nb.apps.correct import (STRATEGIES, correct, compare_strategies, summarize, plot_history, gradient_step,
                                    anchor_influence, relative_residual, head_dataset, head_task, _assign,
                                    pooled_dataset, classifier_task)

def toy(n, seed, d=5):
    "Labelled points of a noisy linear rule, as (x, y) pairs."
    g = torch.Generator().manual_seed(seed)
    w, X = torch.randn(d, generator=torch.Generator().manual_seed(99)), torch.randn(n, d, generator=g)
    return list(zip(X, ((X @ w + 0.8 * torch.randn(n, generator=g)) > 0).long()))

@pytest.fixture(scope='module')
def problem():
    "(fitted task, train, valid, test): logistic regression at the optimum of its L2 objective."
    torch.manual_seed(0)
    train, valid, test = toy(120, 0), toy(40, 1), toy(60, 2)
    task = ClassificationTask(nn.Linear(5, 2).eval(), weight_decay=0.01)
    flat, b = task.flat_params().clone().requires_grad_(True), task.batch(train, range(len(train)))
    opt = torch.optim.LBFGS([flat], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn='strong_wolfe')
    def closure(): opt.zero_grad(); l = task.objective(b, flat); l.backward(); return l
    opt.step(closure); _assign(task, flat.detach())
    return task, train, valid, test

SOLVER = dict(solver=Exact(damping=0.01))

def test_helpful_lowers_and_harmful_raises_anchor_loss(problem):
    task, train, valid, test = problem
    _, h = correct(task, train, valid, test, strategy='helpful', lr=0.5, iterations=4, **SOLVER)
    _, r = correct(task, train, valid, test, strategy='harmful', lr=0.5, iterations=4, **SOLVER)
    h, r = h.iloc[1:], r.iloc[1:]
    assert (h.anchor_loss_after < h.anchor_loss_before).all()
    assert (r.anchor_loss_after > r.anchor_loss_before).all()
    test_anchors = [a for a in h.anchors]  # same seed: same anchors for every strategy
    assert test_anchors == list(r.anchors)

def test_selection_matches_explicit_hessian(problem):
    "The 10 helpful/harmful points of iteration 1 are the extremes of −∇L_Aᵀ(H+λI)⁻¹∇ℓ(z) with an explicit Hessian."
    task, train, valid, test = problem
    _, h = correct(task, train, valid, test, strategy='helpful', lr=0.1, iterations=1, solver=CG(damping=0.01, tol=1e-10))
    _, r = correct(task, train, valid, test, strategy='harmful', lr=0.1, iterations=1, solver=CG(damping=0.01, tol=1e-10))
    theta, b = task.flat_params(), task.batch(train, range(len(train)))
    H = torch.autograd.functional.hessian(lambda f: task.objective(b, f), theta)
    a = task.batch(valid, h.anchors[1])
    gA = torch.autograd.functional.jacobian(lambda f: task.losses(a, f).mean(), theta)
    G = torch.stack([torch.autograd.functional.jacobian(lambda f: task.losses(task.batch(train, [i]), f)[0], theta)
                     for i in range(len(train))])
    scores = -G @ torch.linalg.solve(H + 0.01 * torch.eye(len(H)), gA)
    assert set(h.points[1]) == set(torch.argsort(scores)[:10].tolist())
    assert set(r.points[1]) == set(torch.argsort(scores, descending=True)[:10].tolist())
    assert h.residual[1] < 1e-6  # float32 round-off

def test_anchor_influence_residual_and_sign(problem):
    task, train, valid, test = problem
    scores, cand, s, v = anchor_influence(task, train, valid[:10], train, CG(damping=0.01, tol=1e-10))
    assert relative_residual(task, train, s, v, 0.01) < 1e-6
    assert relative_residual(task, train, s * 1.01, v, 0.01) > 1e-3  # the residual sees a wrong solution
    assert len(scores) == len(cand) == len(train)

def test_lr_zero_changes_nothing(problem):
    task, train, valid, test = problem
    before = task.flat_params().clone()
    for s in STRATEGIES:
        m, h = correct(task, train, valid, test, strategy=s, lr=0.0, iterations=3, **SOLVER)
        assert torch.equal(ClassificationTask(m).flat_params(), before)
        assert h.accuracy.nunique() == 1 and h.loss.nunique() == 1
        assert np.allclose(h.anchor_loss_after[1:], h.anchor_loss_before[1:])

def test_original_model_untouched(problem):
    task, train, valid, test = problem
    before = task.flat_params().clone()
    m, _ = correct(task, train, valid, test, strategy='helpful', lr=1.0, iterations=2, **SOLVER)
    assert torch.equal(task.flat_params(), before)
    assert not torch.equal(ClassificationTask(m).flat_params(), before)

def test_gradient_step_is_sgd_on_objective(problem):
    "Δθ = −lr·∇(mean CE + wd·‖W‖²), computed independently on the nn.Linear."
    task, train, *_ = problem
    import copy
    t = copy.deepcopy(task); lin = t.model
    X = torch.stack([train[i][0] for i in (3, 7, 11)]); y = torch.stack([train[i][1] for i in (3, 7, 11)])
    W, bias = lin.weight.detach().clone().requires_grad_(True), lin.bias.detach().clone().requires_grad_(True)
    obj = nn.functional.cross_entropy(X @ W.T + bias, y) + 0.01 * (W ** 2).sum()
    gW, gb = torch.autograd.grad(obj, (W, bias))
    d = gradient_step(t, train, [3, 7, 11], lr=0.3)
    torch.testing.assert_close(lin.weight.detach(), W.detach() - 0.3 * gW)
    torch.testing.assert_close(lin.bias.detach(), bias.detach() - 0.3 * gb)
    torch.testing.assert_close(d, -0.3 * torch.cat([gW.flatten(), gb]))

def test_anchors_and_random_strategies(problem):
    task, train, valid, test = problem
    _, a = correct(task, train, valid, test, strategy='anchors', lr=0.1, iterations=3, **SOLVER)
    assert all(p == q for p, q in zip(a.points[1:], a.anchors[1:]))
    _, r = correct(task, train, valid, test, strategy='random', lr=0.1, iterations=3, **SOLVER)
    assert all(len(set(p)) == 10 and max(p) < len(train) for p in r.points[1:])
    assert 'residual' not in r  # no solve for random points

def test_knn_restricts_candidates(problem):
    "With k, picked points are among the k pool points nearest to the anchors' mean feature."
    task, train, valid, test = problem
    pf, vf = np.stack([x.numpy() for x, _ in train]), np.stack([x.numpy() for x, _ in valid])
    _, h = correct(task, train, valid, test, strategy='helpful', lr=0.1, iterations=3, k=15, pool_features=pf,
                   valid_features=vf, **SOLVER)
    for pts, anc in zip(h.points[1:], h.anchors[1:]):
        near = np.argsort(((pf - vf[anc].mean(0)) ** 2).sum(1))[:15]
        assert set(pts) <= set(near.tolist())

def test_compare_summarize_plot(problem):
    task, train, valid, test = problem
    runs = compare_strategies(task, train, valid, test, lrs=(0.5,), seeds=(0, 1), iterations=2, progress=False, **SOLVER)
    assert len(runs) == 4 * 2 * 3
    s = summarize(runs)
    assert set(s.strategy) == set(STRATEGIES) and len(s) == 4
    first = runs[runs.iteration == 0].accuracy.iloc[0]
    assert np.allclose(s.acc_before_mean, first)  # every run starts from the same model
    last = runs[(runs.iteration == 2) & (runs.strategy == 'helpful')].accuracy.mean()
    assert np.isclose(s.set_index('strategy').acc_after_mean['helpful'], last)
    ax = plot_history(runs, 'loss')
    assert len(ax.lines) == 4

# --- bad input ----------------------------------------------------------------------------------------------------

def _raises(fn, text):
    with pytest.raises(InfluenceInputError, match=text): fn()

def test_errors(problem):
    task, train, valid, test = problem
    c = lambda **kw: correct(task, train, kw.pop('valid', valid), kw.pop('test', test), **{**SOLVER, **kw})
    _raises(lambda: c(valid=[]), "validation split \\(anchors\\) is empty")
    _raises(lambda: c(test=[]), "test split is empty")
    _raises(lambda: c(pool=train[:5]), "pool has 5 examples, fewer than n_points=10")
    _raises(lambda: c(valid=valid[:4]), "fewer than n_anchors=10")
    unl = [(x, torch.tensor(-1)) for x, _ in valid]
    _raises(lambda: c(valid=unl), "without a class-id label")
    _raises(lambda: c(strategy='best'), "strategy='best'")
    _raises(lambda: c(lr=-1e-4), "not a finite number >= 0")
    _raises(lambda: c(lr=float('nan')), "not a finite number >= 0")
    _raises(lambda: c(k=5), "needs pool_features")
    _raises(lambda: c(iterations=0), "iterations must be an integer >= 1")
    _raises(lambda: compare_strategies(task, train, valid, test, lrs=(1e-4, 0.0), **SOLVER), "not a positive finite number")
    _raises(lambda: compare_strategies(task, train, valid, test, lrs=(-1e-3,), **SOLVER), "not a positive finite number")
    _raises(lambda: compare_strategies(task, train, valid, test, lrs=(), **SOLVER), "lrs is empty")
    _raises(lambda: compare_strategies(task, train, valid, test, strategies=('helpful', 'oops'), **SOLVER), "strategies=")
    task.model.train()
    try: _raises(lambda: c(), "train mode")
    finally: task.model.eval()

def test_dict_items_without_labels(problem):
    task, train, valid, test = problem
    t = ClassificationTask(task.model, collate_fn=lambda items: {'input': torch.stack([i['input'] for i in items])})
    nolab = [{'input': x} for x, _ in valid]
    _raises(lambda: correct(t, train, nolab, test, **SOLVER), "has no labels")

# --- tiny BERT head ------------------------------------------------------------------------------------------------

def test_tiny_bert_head(tiny):
    "head_dataset + head_task reproduce the model's logits; `correct` runs with CG, states a small residual, and lr=0 is a no-op."
    from fastif_nb.data import TextPairDataset, NLI2_LABELS
    from conftest import tiny_bert
    model, tok = tiny_bert(num_labels=2), tiny[1]
    g = np.random.default_rng(0)
    words = 'the cat dog sat ran on in park mat a big small red'.split()
    sent = lambda n: ' '.join(g.choice(words, n)) + ' .'
    ds = TextPairDataset([sent(6) for _ in range(60)], [sent(3) for _ in range(60)],
                         [NLI2_LABELS[i] for i in g.integers(0, 2, 60)], NLI2_LABELS)
    hd, t = head_dataset(model, ds, tok), head_task(model)
    enc = tok(ds.texts_a[:4], ds.texts_b[:4], padding=True, return_tensors='pt')
    with torch.no_grad():
        torch.testing.assert_close(t.model(**hd.collate([hd[i] for i in range(4)])).logits, model(**enc).logits, atol=1e-5, rtol=1e-4)
    ct, pdd = classifier_task(model), pooled_dataset(model, hd)
    with torch.no_grad(): torch.testing.assert_close(ct.model(pdd.tensors[0][:4]), model(**enc).logits, atol=1e-5, rtol=1e-4)
    _, hc = correct(ct, torch.utils.data.Subset(pdd, range(40)), torch.utils.data.Subset(pdd, range(40, 50)),
                    torch.utils.data.Subset(pdd, range(50, 60)), strategy='harmful', solver=Exact(damping=0.01), lr=1.0, iterations=2)
    assert (hc.anchor_loss_after[1:] > hc.anchor_loss_before[1:]).all() and (hc.residual[1:] < 1e-5).all()
    from fastif_nb.model import cache_prefix
    from fastif_nb.text import tokenize
    hd1 = head_dataset(model, cache_prefix(model, tokenize(ds, tok), 1, progress=False))  # from a shallower cache
    torch.testing.assert_close(torch.cat(hd1.hidden_states), torch.cat(hd.hidden_states), atol=1e-5, rtol=1e-4)
    with pytest.raises(InfluenceInputError, match="needs the model's tokenizer"): head_dataset(model, ds)
    train, valid, test = [torch.utils.data.Subset(hd, r) for r in (range(40), range(40, 50), range(50, 60))]
    before = t.flat_params().clone()
    _, h = correct(t, train, valid, test, strategy='helpful', solver=CG(damping=1.0, tol=1e-6, maxiter=500), lr=0.0,
                   iterations=1)
    assert h.residual[1] < 1e-6
    assert torch.equal(t.flat_params(), before) and h.accuracy.nunique() == 1
