"""The retraining check (`fastif_nb.apps.retrain`) on L2 logistic regression, where influence is accurate: predicted
(−ΣI/N) and actual (retrained) loss changes must agree in sign; plus the bad-input errors."""
import pytest, torch
import torch.nn as nn
from sklearn.datasets import load_breast_cancer
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.solvers import Exact
from fastif_nb.influence import influence
from fastif_nb.apps.retrain import fit_top, load_flat, removal_sets, retrain_check
from conftest import cancer_logreg

@pytest.fixture(scope='module')
def logreg():
    "L2 logistic regression on 300 real breast-cancer rows, fitted to convergence, with 6 test points."
    return cancer_logreg(n_test=6, weight_decay=0.01)

def test_signs_agree(logreg):
    task, train, test, init = logreg
    res = influence(task, train, test, Exact(damping=0.0), progress=False)
    rem = removal_sets(res, ms=(1, 5, 20), kinds=('helpful', 'harmful'), system='Exact')
    df = retrain_check(task, test, rem, train, init=init, optimizer='lbfgs', progress=False)
    assert len(df) == 6 * 2 * 3
    big = df[df.predicted.abs() > 1e-6]          # leave out changes at the level of the optimiser's tolerance
    assert len(big) >= 30
    assert ((big.delta > 0) == (big.predicted > 0)).all(), big[(big.delta > 0) != (big.predicted > 0)]
    assert (df[df.kind == 'helpful'].delta > 0).mean() > 0.9 and (df[df.kind == 'harmful'].delta < 0).mean() > 0.9
    one = df[df.m == 1]                          # one point removed: the first-order regime influence describes
    assert one[['delta', 'predicted']].corr().iloc[0, 1] > 0.98

def test_random_sets_and_base(logreg):
    task, train, test, init = logreg
    res = influence(task, train, test, Exact(damping=0.0), progress=False)
    rem = removal_sets(res, ms=(2, 4), kinds=('random',), n_train=len(train), seed=1)
    assert all(len(r['idx']) == r['m'] for r in rem) and all(r['system'] == 'random' for r in rem)
    assert set(rem[0]['idx'].tolist()) <= set(rem[1]['idx'].tolist())      # nested: m=2 within m=4
    df = retrain_check(task, test, rem[:2], train, init=init, optimizer='lbfgs', progress=False, correct=[True] * 6)
    base = task.losses(task.batch(test, [0]))[0].item()
    assert abs(df.base_loss[0] - base) < 1e-8 and df.correct.all()

def test_adamw_recipe_same_seed_is_deterministic(logreg):
    task, train, test, init = logreg
    a = fit_top(task, train, keep=range(250), init=init, epochs=1, lr=1e-2, batch_size=16, seed=3)
    b = fit_top(task, train, keep=range(250), init=init, epochs=1, lr=1e-2, batch_size=16, seed=3)
    c = fit_top(task, train, keep=range(250), init=init, epochs=1, lr=1e-2, batch_size=16, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)

def test_bad_input(logreg):
    task, train, test, init = logreg
    res = influence(task, train, test, Exact(damping=0.0), candidates=torch.arange(10), progress=False)
    with pytest.raises(InfluenceInputError, match='only 10 scored candidates'): removal_sets(res, ms=(5, 25))
    with pytest.raises(InfluenceInputError, match='needs n_train'): removal_sets(res, ms=(5,), kinds=('random',))
    with pytest.raises(InfluenceInputError, match='test dataset is empty'):
        retrain_check(task, torch.utils.data.TensorDataset(torch.zeros(0, 30), torch.zeros(0)), removal_sets(res, ms=(1,), kinds=('helpful',)), train)
    with pytest.raises(InfluenceInputError, match='No training points left'): fit_top(task, train, keep=[])
    task.model.train(); task.model.drop = nn.Dropout(0.1)
    try:
        with pytest.raises(InfluenceInputError, match='train mode'): fit_top(task, train, init=init)
    finally: task.model.eval(); del task.model.drop

def test_fastif_top_on_cached_states(tiny):
    "The same functions on a FastIF: its trainable top retrained on the cached frozen-prefix states (here a tiny BERT)."
    from fastif_nb.data import load_mnli
    from fastif_nb.fastif import FastIF
    from fastif_nb.model import freeze
    from fastif_nb.lissa import LiSSA
    model, tok = tiny
    freeze(model, 3)
    fif = FastIF(model, tok, load_mnli('train').subset(range(40)), n_frozen_layers=3, progress=False)
    init = fif.task.flat_params().clone()
    ex = fif.explain([('A man plays a guitar.', 'A person makes music.', 'entailment')], k=20, solver=LiSSA(depth=50, damping=0.01))
    rem = removal_sets(ex, ms=(1, 5), n_train=40, system='Exact')
    df = retrain_check(fif, fif._prepare([('A man plays a guitar.', 'A person makes music.', 'entailment')])[-1], rem,
                       init=init, epochs=1, lr=1e-3, batch_size=8, progress=False)
    assert len(df) == 6 and df.base_loss.nunique() == 1 and torch.isfinite(torch.tensor(df.delta.values)).all()
    assert (df.delta != 0).all()                  # every removal changed the retrained top
    assert torch.equal(fif.task.flat_params(), init)  # retraining works on copies: the model is untouched
