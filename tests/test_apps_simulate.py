"""Simulatability (`fastif_nb.apps.simulate`) on L2 logistic regression: the simulator learns the task model's
predictions, fine-tuning it on the task model's own predictions lowers its loss, influential points move it in the
direction influence says; plus the bad-input errors."""
import pytest, torch
import numpy as np
import torch.nn as nn
from sklearn.datasets import load_breast_cancer
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.solvers import Exact
from fastif_nb.influence import influence
from fastif_nb.apps.retrain import fit_top, load_flat, predict_labels
from conftest import cancer_logreg
from fastif_nb.apps.simulate import Relabelled, train_simulator, finetune_points, simulate, simulation_summary

@pytest.fixture(scope='module')
def setup():
    "A noisy-label (15%) training set, so the task model's predictions differ from the gold labels; 40 test points."
    return cancer_logreg(n_test=40, weight_decay=0.05, label_noise=0.15)

def test_simulator_learns_predictions(setup):
    task, train, test, init = setup
    sim = train_simulator(task, train, init=init, optimizer='lbfgs')
    pt, ps = predict_labels(task, train), predict_labels(task, train, sim)
    assert (pt != train.tensors[1]).sum() > 10                      # the predictions are not the gold labels ...
    assert (ps == pt).double().mean() > 0.98                         # ... and the simulator learned the predictions
    assert (ps == pt).double().mean() > (ps == train.tensors[1]).double().mean()

def test_finetuning_on_own_predictions_lowers_loss(setup):
    task, train, test, init = setup
    sim = train_simulator(task, train, init=init, optimizer='lbfgs')
    pred = predict_labels(task, test)
    for opt in ('adam', 'sgd'):
        df = simulate(task, sim, Relabelled(test, pred), test, pred, {'own': torch.arange(len(test))[:, None]}, [1e-4, 1e-3], opt)
        assert (df.after < df.before).all(), opt
    # and on the opposite label it rises: the check can fail
    df = simulate(task, sim, Relabelled(test, 1 - pred), test, pred, {'other': torch.arange(len(test))[:, None]}, [1e-3])
    assert (df.after > df.before).all()

def test_influential_points_move_the_loss_as_predicted(setup):
    "For SGD steps small enough to be first order, helpful points lower the gold-label loss more than harmful ones."
    task, train, test, init = setup
    res = influence(task, train, test, Exact(damping=0.0), progress=False)
    pts = finetune_points(res, train.tensors[1], n=5)
    y = test.tensors[1]
    df = simulate(task, task.flat_params(), train, test, y, pts, [1e-3], 'sgd')   # the task model itself, gold targets
    d = (df.after - df.before).groupby(df.kind).mean()
    assert d['helpful'] < d['random (label 0)'] and d['helpful'] < d['random (label 1)'] and d['helpful'] < 0 < d['harmful']
    assert set(pts) == {'helpful', 'harmful', 'random (label 0)', 'random (label 1)'}
    assert all((train.tensors[1][v] == int(k[-2])).all() for k, v in pts.items() if k.startswith('random'))

def test_summary(setup):
    task, train, test, init = setup
    res = influence(task, train, test, Exact(damping=0.0), progress=False)
    pred = predict_labels(task, test)
    df = simulate(task, task.flat_params(), train, test, pred, finetune_points(res, train.tensors[1], n=3), np.logspace(-4, -1, 6))
    df['correct'] = [bool(pred[j] == test.tensors[1][j]) for j in df.test]
    s = simulation_summary(df)
    assert len(s) == 4 * df.correct.nunique() and 'best lr' in s and (s['best Δloss'] <= s.filter(like='@').min(1) + 1e-12).all()

def test_bad_input(setup):
    task, train, test, init = setup
    res = influence(task, train, test, Exact(damping=0.0), progress=False)
    pts = finetune_points(res, train.tensors[1], n=2)
    pred = predict_labels(task, test)
    for lrs in ([1e-3, 0.0], [-1e-3], [], [float('nan')]):
        with pytest.raises(InfluenceInputError, match='must be positive'): simulate(task, task.flat_params(), train, test, pred, pts, lrs)
    with pytest.raises(InfluenceInputError, match='one target per test point'):
        simulate(task, task.flat_params(), train, test, pred[:3], pts, [1e-3])
    with pytest.raises(InfluenceInputError, match=r'must be \[40, n\]'):
        simulate(task, task.flat_params(), train, test, pred, {'x': pts['helpful'][:3]}, [1e-3])
    with pytest.raises(InfluenceInputError, match='optimizer'): simulate(task, task.flat_params(), train, test, pred, pts, [1e-3], 'rmsprop')
    with pytest.raises(InfluenceInputError, match='labels for a dataset'): Relabelled(train, [0, 1])
    with pytest.raises(InfluenceInputError, match='pass 1 <= n'): finetune_points(res, train.tensors[1], n=0)
