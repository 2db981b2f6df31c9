"BlockCG (fastif_nb.blockcg) against explicit Hessians: solutions, residuals, spectra, damping, preconditioning, caching."
import warnings
import pytest, torch
import torch.nn as nn
from fastif_nb.task import ClassificationTask, RegressionTask, InfluenceInputError
from fastif_nb.solvers import Exact
from fastif_nb.influence import influence
from fastif_nb.blockcg import BlockCG, block_cg, spectrum, deflation_preconditioner, problem_fingerprint

def mlp(N=100, d=5, h=6, c=3, seed=0, wd=0.01):
    torch.manual_seed(seed)
    X, y = torch.randn(N, d, dtype=torch.float64), torch.randint(c, (N,))
    net = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, c)).double().eval()
    return ClassificationTask(net, weight_decay=wd), list(zip(X, y))

@pytest.fixture(scope='module')
def prob():
    task, train = mlp()
    H = Exact(batch_size=1000).hessian(task, train)
    return task, train, H, torch.linalg.eigh(H)

def test_indefinite_and_auto_damping(prob):
    task, train, H, (ev, U) = prob
    assert ev[0] < 0  # the fixture really is indefinite
    V = torch.randn(task.n_params, 3, dtype=torch.float64)
    s = BlockCG(damping='auto', tol=1e-10, fit_tol=1e-10, fit_maxiter=300, progress=False)
    X = s.solve(task, train, V)
    assert abs(s.lambda_min_ - ev[0].item()) < 1e-7
    assert s.damping_ == pytest.approx(1.5 * -ev[0].item() + 0.01, rel=1e-6)
    A = H + s.damping_ * torch.eye(len(H), dtype=H.dtype)
    assert torch.linalg.eigvalsh(A)[0] > 0
    torch.testing.assert_close(X, torch.linalg.solve(A, V), rtol=1e-7, atol=1e-9)
    true_res = (A @ X - V).norm(dim=0) / V.norm(dim=0)
    torch.testing.assert_close(s.residuals_, true_res, rtol=1e-6, atol=1e-13)
    assert (s.residuals_ <= 1e-10).all() and s.converged_
    with pytest.raises(InfluenceInputError, match="damping='auto'"): BlockCG(damping=0.0, progress=False).solve(task, train, V)

def test_spectrum_matches_eigh(prob):
    task, train, H, (ev, U) = prob
    sp = spectrum(task, train, rank=6, tol=1e-10, maxiter=300)
    torch.testing.assert_close(sp['eigvals'], ev[-6:], rtol=1e-8, atol=1e-10)
    W = sp['eigvecs']
    torch.testing.assert_close(H @ W, W * sp['eigvals'], rtol=0, atol=1e-7)  # eigenvectors of H
    torch.testing.assert_close(W.T @ W, torch.eye(6, dtype=W.dtype), rtol=0, atol=1e-8)
    assert sp['lambda_min'] == pytest.approx(ev[0].item(), abs=1e-8) and sp['passes'] > 0

def test_damping_adds_to_weight_decay():
    "Ridge regression: H = XᵀX/N + 2·wd·I, so BlockCG(damping=λ) solves (XᵀX/N + (2wd+λ)I) s = v."
    torch.manual_seed(0)
    N, d, wd, lam = 80, 7, 0.03, 0.2
    X = torch.randn(N, d, dtype=torch.float64); y = X @ torch.randn(d, dtype=torch.float64)
    lin = nn.Linear(d, 1, bias=False).double().eval()
    task = RegressionTask(lin, weight_decay=wd)
    V = torch.randn(d, 2, dtype=torch.float64)
    s = BlockCG(damping=lam, tol=1e-12, progress=False).solve(task, list(zip(X, y[:, None])), V)
    closed = torch.linalg.solve(X.T @ X / N + (2 * wd + lam) * torch.eye(d, dtype=torch.float64), V)
    torch.testing.assert_close(s, closed, rtol=1e-9, atol=1e-11)

def test_deflation_cuts_iterations_same_answer(prob):
    task, train, H, (ev, U) = prob
    V = torch.randn(task.n_params, 4, dtype=torch.float64)
    lam = 1.5 * -ev[0].item() + 0.01
    a = BlockCG(damping=lam, tol=1e-10, progress=False); Xa = a.solve(task, train, V)
    b = BlockCG(damping=lam, rank=20, tol=1e-10, fit_tol=1e-10, fit_maxiter=300, progress=False); Xb = b.solve(task, train, V)
    torch.testing.assert_close(Xa, Xb, rtol=1e-7, atol=1e-9)
    assert b.iterations_ < a.iterations_

def test_block_cg_explicit():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64))
    w = torch.logspace(-3, 1, 200, dtype=torch.float64)
    A = Q @ torch.diag(w) @ Q.T
    B = torch.randn(200, 6, generator=g, dtype=torch.float64)
    X, tr = block_cg(lambda P: A @ P, B, tol=1e-11, maxiter=1000)
    torch.testing.assert_close(X, torch.linalg.solve(A, B), rtol=1e-6, atol=1e-8)
    assert tr[-1].max() <= 1e-11 and tr.shape[1] == 6
    # deflating all but the 10 smallest eigenvalues leaves condition number w[9]/w[0]: far fewer iterations
    pre = deflation_preconditioner(w[10:], Q[:, 10:], 0.0)
    Xp, trp = block_cg(lambda P: A @ P, B, pre, tol=1e-11, maxiter=1000)
    torch.testing.assert_close(Xp, X, rtol=1e-6, atol=1e-8)
    assert len(trp) <= 12 < len(tr)
    # a warm start at the solution needs no iteration; duplicate right-hand sides are handled (rank-deficient block)
    assert len(block_cg(lambda P: A @ P, B, X0=X, tol=1e-8)[1]) == 1
    Xd, _ = block_cg(lambda P: A @ P, torch.cat([B[:, :2], B[:, :2]], 1), tol=1e-10, maxiter=1000)
    torch.testing.assert_close(Xd[:, :2], Xd[:, 2:], rtol=0, atol=1e-8)
    with pytest.raises(InfluenceInputError, match='non-positive curvature'): block_cg(lambda P: -A @ P, B)

def test_cache_and_fingerprint(prob, tmp_path):
    task, train, H, _ = prob
    V = torch.randn(task.n_params, 2, dtype=torch.float64)
    a = BlockCG(rank=3, cache_dir=tmp_path, progress=False, fit_maxiter=100); a.solve(task, train, V)
    assert a.fit_['loaded'] is False and len(list(tmp_path.glob('blockcg-*.pt'))) == 1
    b = BlockCG(rank=3, cache_dir=tmp_path, progress=False, fit_maxiter=100).fit(task, train)
    assert b.fit_['loaded'] is True and b.damping_ == a.damping_
    torch.testing.assert_close(b.fit_['eigvecs'], a.fit_['eigvecs'])
    fp = problem_fingerprint(task, train)
    assert problem_fingerprint(task, train[:-1]) != fp
    with torch.no_grad(): task.model[0].weight[0, 0] += 1e-3
    try:
        assert problem_fingerprint(task, train) != fp
        assert BlockCG(rank=3, cache_dir=tmp_path, progress=False, fit_maxiter=100).fit(task, train).fit_['loaded'] is False
    finally:
        with torch.no_grad(): task.model[0].weight[0, 0] -= 1e-3
    # fitting twice in memory does no new work
    n = a.fit_; a.fit(task, train); assert a.fit_ is n

def test_solver_interface(prob):
    task, train, H, (ev, _) = prob
    lam = 0.3
    v = torch.randn(task.n_params, dtype=torch.float64)
    x = BlockCG(damping=lam, tol=1e-11, progress=False).solve(task, train, v)
    assert x.shape == v.shape
    torch.testing.assert_close(x, torch.linalg.solve(H + lam * torch.eye(len(H), dtype=H.dtype), v), rtol=1e-8, atol=1e-10)
    test = train[:3]
    I_b = influence(task, train, test, BlockCG(damping=lam, tol=1e-11, progress=False), progress=False).scores
    I_e = influence(task, train, test, Exact(damping=lam), progress=False).scores
    torch.testing.assert_close(I_b, I_e, rtol=1e-7, atol=1e-10)

def test_not_converged_warns_and_bad_args(prob):
    task, train, _, _ = prob
    V = torch.randn(task.n_params, 2, dtype=torch.float64)
    s = BlockCG(damping=0.3, maxiter=1, progress=False)
    with pytest.warns(UserWarning, match='raise maxiter'): s.solve(task, train, V)
    assert not s.converged_ and s.iterations_ == 1 and (s.residuals_ > s.tol).all()
    for kw, msg in ((dict(damping=-1), 'damping must be'), (dict(damping='big'), 'damping must be'),
                    (dict(rank=-1), 'rank >= 0'), (dict(tol=0), 'tol > 0')):
        with pytest.raises(InfluenceInputError, match=msg): BlockCG(**kw)

def test_hessian_subsample_and_its_all_n_residual():
    "hessian_size < N: exact for the subsample's system; residual_all_ estimates the all-N residual within a factor 2."
    task, train = mlp(N=400)
    H = Exact(batch_size=1000).hessian(task, train)
    V = torch.randn(task.n_params, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sub = BlockCG(damping=1.0, tol=1e-10, hessian_size=60, progress=False)
    X = sub.solve(task, train, V, progress=False)
    A = H + torch.eye(len(H), dtype=H.dtype)                                     # the all-N system (damping 1)
    exact = ((A @ X - V).norm(dim=0) / V.norm(dim=0)).max().item()
    assert sub.residual_ <= 1e-9 and sub.hessian_size_ == 60 and exact > 1e-3     # solved its own system, not all N's
    assert exact / 2 <= sub.residual_all_ <= 2 * exact
    full = BlockCG(damping=1.0, tol=1e-10, progress=False); full.solve(task, train, V, progress=False)
    assert full.residual_all_ == full.residual_ and full.hessian_size_ == 400
    res = influence(task, train, train[:2], sub, candidates=[0, 1, 2], progress=False)
    assert res.residual_all == sub.residual_all_ and 'on all N' in repr(res)
