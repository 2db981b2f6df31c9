"""Fitted solver quantities are computed once per problem: LiSSA's automatic scale and BlockCG's damping are reused while
the parameters, objective and data are the same, and refitted when any of them changes."""
import torch, torch.nn as nn
import fastif_nb.lissa as L
from fastif_nb.task import ClassificationTask
from fastif_nb.blockcg import BlockCG

def problem(seed=0, N=40):
    torch.manual_seed(seed)
    X, y = torch.randn(N, 5, dtype=torch.float64), torch.randint(3, (N,))
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double().eval()
    return ClassificationTask(net, weight_decay=0.01), list(zip(X, y))

def test_lissa_scale_is_fitted_once_per_problem(monkeypatch):
    task, train = problem()
    calls = []
    real = L.top_eigenvalue
    monkeypatch.setattr(L, 'top_eigenvalue', lambda *a, **k: calls.append(1) or real(*a, **k))
    s = L.LiSSA(depth=5, batch_size=4, damping=0.5, scale='auto', scale_batches=3, seed=0)
    first = s.resolve_scale(task, train); n = len(calls)
    assert n == 3 and s.resolve_scale(task, train) == first and len(calls) == n          # same problem: no new power iterations
    with torch.no_grad(): task.model[0].weight.add_(0.1)                                  # new parameters: refitted
    assert s.resolve_scale(task, train) != first and len(calls) == 2 * n
    s.seed = 1; s.resolve_scale(task, train); assert len(calls) == 3 * n                   # other settings: refitted

def test_block_cg_fit_is_reused_and_refitted():
    task, train = problem()
    s = BlockCG(damping='auto', tol=1e-8, progress=False)
    s.solve(task, train, torch.randn(task.n_params, 2, dtype=torch.float64), progress=False)
    key, lam = s.fit_['key'], s.damping_
    s.fit(task, train); assert s.fit_['key'] == key and s.damping_ == lam                  # cached
    s.fit(task, train[:30]); assert s.fit_['key'] != key                                   # other data: another fit
