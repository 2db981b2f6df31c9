"""fastif_nb.selector against exact influence: on a convex model (the head is the whole model) HeadSelector's scores and
top-k equal the explicit-Hessian influence; on a tiny BERT it equals the exact influence of the classifier's parameters;
SketchSelector with an injective sketch equals the exact Gauss–Newton influence; bad input raises InfluenceInputError."""
import pytest, torch, torch.nn as nn
from torch.autograd.functional import hessian
from fastif_nb.errors import InfluenceInputError
from fastif_nb.task import ClassificationTask
from fastif_nb.selector import HeadSelector, SketchSelector, CountSketch, head_inputs, head_linear, head_hessian

def convex(C=3, d=5, n=80, m=4, wd=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Linear(d, C).double().eval()
    X, y = torch.randn(n + m, d, generator=g, dtype=torch.float64), torch.randint(C, (n + m,), generator=g)
    with torch.no_grad(): model.weight.mul_(2)
    train, test = list(zip(X[:n], y[:n])), list(zip(X[n:], y[n:]))
    return ClassificationTask(model, weight_decay=wd), train, test

def exact_influence(task, train, test, lam, ggn=False):
    "−g_testᵀ(H+λI)⁻¹g_i with H the explicit Hessian of the objective (or its Gauss–Newton part), [m, N]."
    flat, b = task.flat_params(), task.batch(train, range(len(train)))
    if ggn:
        from torch.func import jacrev, functional_call
        x, y = b
        J = jacrev(lambda f: functional_call(task.model, task.unflatten(f), (x,)))(flat)   # [N, C, p]
        p = task.model(x).softmax(-1)
        A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        H = torch.einsum('ncp,nce,neq->pq', J, A, J) / len(x) + 2 * task.weight_decay * torch.diag(task.decay_mask.double())
    else: H = hessian(lambda f: task.objective(b, f), flat)
    Gtr, Gte = task.per_example_grads(b), task.per_example_grads(task.batch(test, range(len(test))))
    return -Gte @ torch.linalg.solve(H + lam * torch.eye(len(H), dtype=H.dtype), Gtr.T)

@pytest.mark.parametrize('C', [2, 3])
def test_convex_head_equals_exact(C):
    task, train, test = convex(C)
    ref = exact_influence(task, train, test, 0.05)
    hs = HeadSelector.build(task, train, damping=0.05, progress=False)
    assert hs.n == 80 and hs.dim == C * 6 and 'HeadSelector' in repr(hs)
    got = hs.influence(test, task)
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    for k in (1, 10, 40):
        I = hs.search(test, k, task)
        assert I.shape == (4, k)
        for j in range(4): assert set(I[j].tolist()) == set(ref[j].abs().topk(k).indices.tolist())
    top = hs.search(test, 5, task, which='harmful')
    assert all(set(top[j].tolist()) == set(ref[j].topk(5).indices.tolist()) for j in range(4))
    low = hs.search(test, 5, task, which='helpful')
    assert all(set(low[j].tolist()) == set((-ref[j]).topk(5).indices.tolist()) for j in range(4))

def test_head_hessian_matches_autograd():
    task, train, _ = convex(3, wd=0.0)
    X, P, y = head_inputs(task, train, progress=False)
    H = head_hessian(X, P)
    # autograd order is weight (row-major) then bias; ours is [W | b] row-major: permute
    d = X.shape[1]; perm = [c * d + j if j < d else 3 * d + c for c in range(3) for j in range(d + 1)]
    Ha = hessian(lambda f: task.objective(task.batch(train, range(len(train))), f), task.flat_params())[perm][:, perm]
    assert torch.allclose(H, Ha, atol=1e-10)

def test_tiny_bert_head_equals_classifier_influence(tiny):
    from fastif_nb.model import CachedDataset
    from fastif_nb.clstop import ClsTop
    model = tiny[0].double()
    g = torch.Generator().manual_seed(0)
    mk = lambda n: CachedDataset([torch.randn(int(torch.randint(3, 9, (1,), generator=g)), 32, generator=g, dtype=torch.float64)
                                  for _ in range(n)], torch.randint(3, (n,), generator=g), 3)
    train, test = mk(40), mk(3)
    top = ClsTop(model, 3)
    full = ClassificationTask(top, weight_decay=0.01, collate_fn=train.collate)          # all top parameters
    head_only = ClassificationTask(top, params=['classifier'], weight_decay=0.01, collate_fn=train.collate)
    hs = HeadSelector.build(full, train, damping=0.1, progress=False)
    ref = exact_influence(head_only, train, test, 0.1)
    assert torch.allclose(hs.influence(test, full).double(), ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))
    X, _, _ = head_inputs(full, train, progress=False)
    assert X.shape == (40, 32)

@pytest.mark.parametrize('C', [2, 3])
def test_sketch_injective_equals_exact_ggn(C):
    task, train, test = convex(C, n=60, wd=0.0)    # (the sketch models decay as 2·wd·I: exact only without NO_DECAY terms)
    sk = SketchSelector.build(task, train, dim=4096, damping=0.05, batch_size=16, progress=False)
    assert len(sk.sketch.bucket.unique()) == task.n_params    # injective here, so the sketch loses nothing
    ref = exact_influence(task, train, test, 0.05, ggn=True)   # linear model: GGN = Hessian
    got = sk.influence(test, task)
    assert torch.allclose(got.double(), ref, rtol=1e-3, atol=1e-5 * float(ref.abs().max()))
    assert torch.allclose(ref, exact_influence(task, train, test, 0.05), atol=1e-8)
    I = sk.search(test, 10, task)
    assert all(set(I[j].tolist()) == set(ref[j].abs().topk(10).indices.tolist()) for j in range(len(test)))

def test_sketch_dots_are_exact_scores():
    task, train, test = convex(2, n=30)
    S = torch.randn(task.n_params, 2, dtype=torch.float64)
    sk = SketchSelector.build(task, train, dim=64, damping=0.1, also_dot=S, progress=False)
    G = task.per_example_grads(task.batch(train, range(30)))
    assert torch.allclose(sk.dots_.double(), G @ S, atol=1e-10)

def test_count_sketch_preserves_inner_products_in_expectation():
    u, v = torch.randn(2000, dtype=torch.float64), torch.randn(2000, dtype=torch.float64)
    est = torch.tensor([float(CountSketch(2000, 256, s)(u) @ CountSketch(2000, 256, s)(v)) for s in range(200)])
    assert abs(est.mean() - u @ v) < 4 * est.std() / 200 ** 0.5 + 1e-9

def test_bad_input():
    task, train, test = convex(3)
    hs = HeadSelector.build(task, train, progress=False)
    for k in (0, 81, 2.5):
        with pytest.raises(InfluenceInputError, match='k must be an integer'): hs.search(test, k, task)
    with pytest.raises(InfluenceInputError, match="which='best'"): hs.search(test, 3, task, which='best')
    with pytest.raises(InfluenceInputError, match='Pass the task'): hs.search(test, 3)
    X, P, y = head_inputs(task, train, progress=False)
    with pytest.raises(InfluenceInputError, match='one N'): HeadSelector.from_features(X, P[:-1], y)
    with pytest.raises(InfluenceInputError, match='Non-finite'): HeadSelector.from_features(X * float('nan'), P, y)
    with pytest.raises(InfluenceInputError, match='class ids'): HeadSelector.from_features(X, P, y + 3)
    with pytest.raises(InfluenceInputError, match='damping'): HeadSelector.from_features(X, P, y, damping=-1)
    with pytest.raises(InfluenceInputError, match='not positive definite'): HeadSelector.from_features(X, P, y, damping=0.0)
    with pytest.raises(InfluenceInputError, match='empty'): head_inputs(task, [], progress=False)
    with pytest.raises(InfluenceInputError, match='Cannot find the classification head'): head_linear(nn.Sequential(nn.ReLU()))
    with pytest.raises(InfluenceInputError, match='no bias'):
        HeadSelector.build(ClassificationTask(nn.Linear(5, 3, bias=False).double().eval()), train, progress=False)
    with pytest.raises(InfluenceInputError, match='damping must be > 0'): SketchSelector.build(task, train, damping=0, progress=False)
    with pytest.raises(InfluenceInputError, match='dim must be'): SketchSelector.build(task, train, dim=0, progress=False)
    with pytest.raises(InfluenceInputError, match='empty'): SketchSelector.build(task, [], progress=False)
    sk = SketchSelector.build(task, train, dim=32, progress=False)
    with pytest.raises(InfluenceInputError, match='k must be an integer'): sk.search(test, 0, task)

@pytest.mark.parametrize('kind', ['head', 'sketch'])
def test_fastif_explain_with_a_selector(kind):
    "FastIF.explain(selector=) scores the selector's top k, with Full's scores on them; the damping is the solver's; other data is refused."
    from fastif_nb.fastif import FastIF
    from fastif_nb.blockcg import BlockCG
    from fastif_nb.data import load_mnli
    from fastif_nb.testing import tiny_bert, offline_tokenizer
    fif = FastIF(tiny_bert(), offline_tokenizer(), load_mnli('train').subset(range(50)), n_frozen_layers=2, progress=False,
                 solver=BlockCG(damping='auto', tol=1e-8, progress=False))
    dev = load_mnli('dev_matched').subset(range(2))
    sel = fif.build_selector(kind, **({'dim': 256} if kind == 'sketch' else {}))
    assert sel.damping == pytest.approx(fif.solver.damping_) and len(sel) == 50
    ex, full = fif.explain(dev, k=8, selector=sel), fif.explain(dev, k=None)
    want = sel.search(fif._prepare(dev)[-1], 8, fif.task)
    assert torch.equal(ex.indices.sort(1).values, want.sort(1).values)
    torch.testing.assert_close(ex.scores, torch.gather(full.scores, 1, ex.indices), rtol=1e-4, atol=1e-6 * full.scores.abs().max().item())
    other = HeadSelector.build(fif.task, torch.utils.data.Subset(fif.train_cached, range(30)), damping=0.1, progress=False)
    with pytest.raises(InfluenceInputError, match='built on 30 training examples'): fif.explain(dev, k=5, selector=other)
    with pytest.raises(InfluenceInputError, match="use 'sketch' or 'head'"): fif.build_selector('knn')
