"""Estimates a user can trust (issue 9): convergence certificates, divergence caught early, error bars, no silent NaN,
validated arguments. Every case here was a silent wrong number or a raw Python error before.

Contract checked here:
- every solver sets `residual_` (float: the worst relative residual ‖(H+λI)x−v‖/‖v‖ over the right-hand sides) and
  `residuals_` ([m]); exactly for Exact/CG, estimated on fresh Hessian batches for LiSSA;
- LiSSA also sets `effective_damping_` (≈ scale/J: the smallest eigenvalue the truncated series still inverts) and
  `step_change_` (relative change of the iterate over the last step), and warns (UserWarning subclass) when its
  estimated residual exceeds `warn_residual`, with a message that says what to change;
- `InfluenceResult.stderr` ([m, k] or None) with T > 1 repetitions, and `helpful`/`harmful` that never return a point
  of the other sign.
Ground truth: the explicit Hessian of a small convex (L2 logistic regression) problem, in float64.
"""
import warnings
import pytest, torch, torch.nn as nn
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.solvers import Exact, CG
from fastif_nb.lissa import LiSSA, LiSSADivergedError
from fastif_nb.influence import influence, InfluenceResult

LAM = 0.05

def problem(n:int=300, seed:int=0):
    "A float64 L2 logistic regression (convex): task, train, test."
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + 4, 6, generator=g, dtype=torch.float64); w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    Y = (X @ w + 0.5 * torch.randn(n + 4, 3, generator=g, dtype=torch.float64)).argmax(1)
    torch.manual_seed(seed)
    model = nn.Linear(6, 3).double().eval()
    ds = lambda a, b: torch.utils.data.TensorDataset(X[a:b], Y[a:b])
    return ClassificationTask(model, weight_decay=0.01), ds(0, n), ds(n, n + 4)

@pytest.fixture(scope='module')
def convex():
    task, train, test = problem()
    H = Exact().hessian(task, train)
    A = H + LAM * torch.eye(len(H), dtype=H.dtype)
    from fastif_nb import influence as inf
    G = getattr(inf, 'query_gradients', None) or getattr(inf, 'test_gradients')
    V = G(task, test).T
    return task, train, test, A, V, torch.linalg.eigvalsh(A - LAM * torch.eye(len(A), dtype=A.dtype))[-1].item()

def true_residual(A, X, V): return ((A @ X - V).norm(dim=0) / V.norm(dim=0)).max().item()

# --- convergence certificates ---------------------------------------------------------------------------------------
def test_exact_and_cg_report_their_residual(convex):
    task, train, _, A, V, _ = convex
    for s in (Exact(damping=LAM), CG(damping=LAM, tol=1e-10, maxiter=200)):
        X = s.solve(task, train, V, progress=False)
        assert s.residual_ < 1e-8 and abs(s.residual_ - true_residual(A, X, V)) < 1e-8
        assert s.residuals_.shape == (V.shape[1],)

def test_cg_not_converged_warns_instead_of_printing(convex, capsys):
    task, train, _, A, V, _ = convex
    s = CG(damping=LAM, tol=1e-12, maxiter=2)
    with pytest.warns(UserWarning, match=r"(?i)not converged.*maxiter"): X = s.solve(task, train, V, progress=False)
    assert s.converged_ is False and capsys.readouterr().out == ''
    assert s.residual_ == pytest.approx(true_residual(A, X, V), rel=1e-6)

@pytest.mark.parametrize('depth,factor', [(5, 1.), (20, 1.), (50, 4.), (200, 1.), (200, 20.), (1000, 4.)])
def test_lissa_residual_estimate_within_factor_2(convex, depth, factor):
    "On fresh batches, LiSSA's residual estimate is within a factor 2 of the exact residual (J and scale swept)."
    task, train, _, A, V, top = convex
    s = LiSSA(depth=depth, batch_size=16, repeats=2, damping=LAM, scale=factor * (top + LAM), seed=1)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); X = s.solve(task, train, V, progress=False)
    r = true_residual(A, X, V)
    assert r / 2 <= s.residual_ <= 2 * r, (s.residual_, r)
    assert s.effective_damping_ == pytest.approx(s.scale_ / depth, rel=1e-6)
    assert s.step_change_ >= 0

def test_lissa_warns_exactly_when_the_residual_is_too_large(convex):
    "The warning fires when the true residual is clearly above `warn_residual`, and not when it is clearly below."
    task, train, _, A, V, top = convex
    seen = []
    for depth in (3, 10, 30, 100, 300, 1500):
        s = LiSSA(depth=depth, batch_size=32, repeats=2, damping=LAM, scale=2 * (top + LAM), seed=2)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always'); X = s.solve(task, train, V, progress=False)
        r, warned = true_residual(A, X, V), any('residual' in str(x.message) for x in w)
        if r > 2 * s.warn_residual: assert warned, (depth, r)
        if r < s.warn_residual / 2: assert not warned, (depth, r)
        seen.append((r, warned))
        if warned: assert any(k in str(w[-1].message) for k in ('depth', 'scale', 'damping'))
    assert any(x for _, x in seen) and not all(x for _, x in seen)  # the sweep covers both sides

def test_lissa_scale_far_too_large_warns(convex):
    "Scale 1000x too large: the series has barely started (relative error ~0.99); a warning, never silence."
    task, train, _, _, V, top = convex
    with pytest.warns(UserWarning, match=r"(?i)residual"):
        LiSSA(depth=50, batch_size=8, damping=LAM, scale=1000 * (top + LAM)).solve(task, train, V, progress=False)

# --- divergence ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('f', [0.45, 0.47, 0.49])
@pytest.mark.parametrize('B', [300, 8])
def test_slow_divergence_is_caught(convex, f, B):
    "Scale slightly below (top+λ)/2: the series diverges slowly; LiSSADivergedError, not a wrong number."
    task, train, _, _, V, top = convex
    with pytest.raises(LiSSADivergedError, match=r"(?i)scale"):
        LiSSA(depth=400, batch_size=B, damping=LAM, scale=f * (top + LAM)).solve(task, train, V, progress=False)

# --- no silent NaN ---------------------------------------------------------------------------------------------------
def test_nan_training_example_is_named(convex):
    task, train, test, _, _, top = convex
    X, Y = train.tensors; X = X.clone(); X[7, 2] = float('nan')
    bad = torch.utils.data.TensorDataset(X, Y)
    for s in (LiSSA(depth=5, batch_size=1, damping=LAM, scale=2 * (top + LAM), seed=3), Exact(damping=LAM)):
        with pytest.raises(InfluenceInputError, match=r"(?i)non-finite.*\b7\b"):
            influence(task, bad, test, s, progress=False)

def test_nan_training_example_dropped_on_request(convex):
    task, train, test, _, _, _ = convex
    X, Y = train.tensors; X = X.clone(); X[7, 2] = float('nan')
    bad = torch.utils.data.TensorDataset(X, Y)
    with pytest.warns(UserWarning, match=r"\b7\b"):
        r = influence(task, bad, test, Exact(damping=LAM), nonfinite='drop', progress=False)
    assert torch.isfinite(r.scores).all() and 7 not in r.indices[0].tolist()

# --- error bars ------------------------------------------------------------------------------------------------------
def test_stderr_from_repeats_matches_the_spread(convex):
    task, train, test, A, V, top = convex
    s = LiSSA(depth=100, batch_size=1, repeats=4, damping=LAM, scale='auto', seed=4)  # B=1: the full-H scale diverges
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); r = influence(task, train, test, s, progress=False)
    assert r.stderr is not None and r.stderr.shape == r.scores.shape and (r.stderr > 0).all()
    ex = Exact(damping=LAM)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); exact = influence(task, train, test, ex, progress=False)
    assert exact.stderr is None or (exact.stderr == 0).all()
    z = ((r.scores - exact.scores) / r.stderr).abs()
    assert z.median() < 3  # the error bars are of the right size (LiSSA's bias aside, J=100 is converged here)

# --- validated arguments ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('make,msg', [
    (lambda: LiSSA(depth=2.5), 'depth'), (lambda: LiSSA(depth=0), 'depth'), (lambda: LiSSA(scale=float('inf')), 'scale'),
    (lambda: LiSSA(scale=-1.), 'scale'), (lambda: LiSSA(batch_size=0), 'batch_size'), (lambda: LiSSA(repeats=1.5), 'repeats'),
    (lambda: CG(damping=float('inf')), 'damping'), (lambda: CG(maxiter=0), 'maxiter'), (lambda: CG(tol=-1.), 'tol'),
    (lambda: Exact(damping=-0.1), 'damping'), (lambda: Exact(damping=float('nan')), 'damping')])
def test_solver_arguments_are_checked_at_construction(make, msg):
    with pytest.raises(InfluenceInputError, match=msg): make()

def test_negative_damping_on_request():
    assert Exact(damping=-0.1, allow_negative_damping=True).damping == -0.1

def test_singular_system_is_refused():
    task, train, test = problem(n=2)  # 2 examples, 21 parameters, no damping: H + 0·I is singular
    task.weight_decay = 0.0
    with pytest.raises(InfluenceInputError, match=r"(?i)singular|ill-conditioned"):
        influence(task, train, test, Exact(damping=0.0), progress=False)

@pytest.mark.parametrize('solver,msg', [(None, 'solver'), (Exact, 'instance'), ('cg', 'solver')])
def test_bad_solver(convex, solver, msg):
    task, train, test, *_ = convex
    with pytest.raises(InfluenceInputError, match=msg): influence(task, train, test, solver, progress=False)

@pytest.mark.parametrize('cand,msg', [({1, 2, 3}, '(?i)set'), (torch.tensor([1.5, 2.]), '(?i)integer'),
                                      ([], 'empty'), ([0, 400], r'\[0, 300\)')])
def test_bad_candidates(convex, cand, msg):
    task, train, test, *_ = convex
    with pytest.raises(InfluenceInputError, match=msg): influence(task, train, test, Exact(damping=LAM), cand, progress=False)

def test_boolean_mask_is_a_mask(convex):
    task, train, test, *_ = convex
    mask = torch.zeros(300, dtype=torch.bool); mask[[3, 10, 42]] = True
    r = influence(task, train, test, Exact(damping=LAM), mask, progress=False)
    assert r.indices[0].tolist() == [3, 10, 42]

def test_unknown_score_method_fails_before_the_solve(convex):
    task, train, test, *_ = convex
    class Spy(Exact):
        def _solve(self, *a): raise AssertionError('solved before validating the scoring method')
    with pytest.raises(InfluenceInputError, match='jvp'):
        influence(task, train, test, Spy(damping=LAM), score_method='magic', progress=False)

# --- InfluenceResult -------------------------------------------------------------------------------------------------
def test_result_shapes_are_checked():
    with pytest.raises(InfluenceInputError, match='shape'): InfluenceResult(torch.zeros(2, 5), torch.arange(4))
    with pytest.raises(InfluenceInputError, match='shape'): InfluenceResult(torch.zeros(2, 5), torch.zeros(3, 5, dtype=torch.long))

def test_helpful_means_negative():
    r = InfluenceResult(torch.tensor([[3., 1., 2.], [-1., 4., -2.]]), torch.tensor([10, 11, 12]))
    assert r.helpful(2, 0) == [] and [i for i, _ in r.harmful(5, 0)] == [10, 12, 11]
    assert [i for i, _ in r.helpful(5, 1)] == [12, 10] and [i for i, _ in r.harmful(5, 1)] == [11]
    with pytest.raises(InfluenceInputError, match='n'): r.helpful(-1)
    with pytest.raises(InfluenceInputError, match=r'\b5\b'): r.helpful(2, j=5)

def test_nan_scores_are_refused():
    with pytest.raises(InfluenceInputError, match='(?i)non-finite'): InfluenceResult(torch.tensor([[1., float('nan')]]), torch.arange(2))

# --- the task says what it does ---------------------------------------------------------------------------------------
def test_task_repr_lists_decayed_parameters():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    t = ClassificationTask(m, weight_decay=0.01)
    assert 'decay' in repr(t) and '0.weight' in repr(t) and t.decayed == ['0.weight', '2.weight']

@pytest.mark.parametrize('kw', [dict(params=['0.weight', '2.wieght']), dict(no_decay=('bias', 'LayerNorm.weight'))])
def test_patterns_that_match_nothing_are_errors(kw):
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(InfluenceInputError, match=r'wieght|LayerNorm'): ClassificationTask(m, weight_decay=0.01, **kw)

# --- additions (engine helper): the sampled certificate, the display, 2-D candidates with drop ---------------------
@pytest.mark.parametrize('depth,factor', [(5, 1.), (20, 1.), (5, 20.)])
def test_sampled_certificate_when_the_residual_is_large(convex, depth, factor):
    "With residual_samples < N the certificate is the fresh-batch U-statistic: within a factor 2 where the residual is large."
    task, train, _, A, V, top = convex
    s = LiSSA(depth=depth, batch_size=16, repeats=2, damping=LAM, scale=factor * (top + LAM), seed=1, residual_samples=256)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); X = s.solve(task, train, V, progress=False)
    r = true_residual(A, X, V)
    assert r > 0.3 and r / 2 <= s.residual_ <= 2 * r and 0 < s.residual_noise_ < r, (s.residual_, s.residual_noise_, r)

def test_residual_and_error_bars_are_shown(convex):
    task, train, test, *_ = convex
    s = LiSSA(depth=50, batch_size=16, repeats=2, damping=LAM, scale='auto', seed=5)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); r = influence(task, train, test, s, progress=False)
    assert r.residual == s.residual_ and r.effective_damping == pytest.approx(s.scale_ / 50)
    assert 'solve residual' in repr(r) and 'stability' in repr(r) and 'stderr' in r.to_pandas(2).columns
    assert r.stability.shape == (4,) and ((0 <= r.stability) & (r.stability <= 1)).all()
    assert influence(task, train, test, s, uncertainty=False, progress=False).stderr is None

def test_uncertainty_true_runs_two_repeats(convex):
    task, train, test, *_ = convex
    s = LiSSA(depth=50, batch_size=16, repeats=1, damping=LAM, scale='auto', seed=6)
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); r = influence(task, train, test, s, uncertainty=True, progress=False)
    assert r.stderr is not None and s.repeats == 1  # the caller's solver is not changed

def test_drop_with_per_test_candidates(convex):
    task, train, test, *_ = convex
    X, Y = train.tensors; X = X.clone(); X[[7, 9]] = float('nan')
    bad = torch.utils.data.TensorDataset(X, Y)
    cand = torch.stack([torch.arange(20) + j for j in range(4)])  # rows contain 7 and 9
    with pytest.warns(UserWarning, match=r"\b7\b.*\b9\b"):
        r = influence(task, bad, test, Exact(damping=LAM), cand, nonfinite='drop', progress=False)
    assert r.scores.shape == (4, 18) and not torch.isin(r.indices, torch.tensor([7, 9])).any()

def test_nonfinite_gradient_with_finite_loss_is_named(convex):
    "A candidate the solve never saw (LiSSA's samples, certificate off) with a NaN loss: the scorer names it."
    task, train, test, _, _, top = convex
    X, Y = train.tensors; X = X.clone(); X[123] = float('inf')
    bad = torch.utils.data.TensorDataset(X, Y)
    s = LiSSA(depth=3, batch_size=1, damping=LAM, scale=2 * (top + LAM), seed=0, residual_samples=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(InfluenceInputError, match=r"(?i)non-finite.*training indices \[123\]"): influence(task, bad, test, s, progress=False)
