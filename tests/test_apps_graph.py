"""Effect visualisation (`fastif_nb.apps.graph`): one multi-RHS solve for all slices equals per-slice solves, the
slice statistics match hand computations, and the circular layout puts training points near what they influence."""
import math, pytest, torch
import numpy as np
import pandas as pd
import torch.nn as nn
from sklearn.datasets import load_breast_cancer
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.solvers import Exact
from fastif_nb.influence import influence
from fastif_nb.apps.retrain import fit_top, load_flat
from fastif_nb.apps.graph import slice_influences, slice_stats, slice_correlations, circular_layout, top_edges

@pytest.fixture(scope='module')
def logreg():
    torch.manual_seed(0)
    X, y = load_breast_cancer(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / X.std(0)); y = torch.tensor(y)
    perm = torch.randperm(len(X))
    train = torch.utils.data.TensorDataset(X[perm[:200]], y[perm[:200]])
    sl = {'a': torch.utils.data.TensorDataset(X[perm[200:205]], y[perm[200:205]]),
          'b': torch.utils.data.TensorDataset(X[perm[205:212]], y[perm[205:212]])}
    task = ClassificationTask(nn.Linear(30, 2).double().eval(), weight_decay=0.01, no_decay=())
    load_flat(task, fit_top(task, train, init=torch.zeros(task.n_params, dtype=torch.float64), optimizer='lbfgs'))
    return task, train, sl

def test_one_solve_equals_per_slice(logreg):
    task, train, sl = logreg
    e = slice_influences(task, sl, Exact(), train, progress=False)
    assert len(e) == 12 * 200 and list(dict.fromkeys(e.slice)) == ['a', 'b']
    for name, off in (('a', 0), ('b', 5)):
        I = influence(task, train, sl[name], Exact(), progress=False).scores
        got = e[e.slice == name].pivot(index='test', columns='train', values='influence').to_numpy()
        np.testing.assert_allclose(got, I.numpy(), rtol=1e-8, atol=1e-12)
        assert set(e[e.slice == name].test) == set(range(off, off + len(sl[name])))

def test_candidates_and_errors(logreg):
    task, train, sl = logreg
    e = slice_influences(task, sl, Exact(), train, candidates=lambda t: torch.arange(10).expand(len(t), -1), progress=False)
    assert len(e) == 12 * 10 and set(e.train) == set(range(10))
    with pytest.raises(InfluenceInputError, match=r"Slice\(s\) \['b'\] have no test points"):
        slice_influences(task, {'a': sl['a'], 'b': torch.utils.data.TensorDataset(torch.zeros(0, 30), torch.zeros(0))}, Exact(), train)
    with pytest.raises(InfluenceInputError, match='No slices'): slice_influences(task, {}, Exact(), train)
    with pytest.raises(InfluenceInputError, match='training dataset'): slice_influences(task, sl, Exact())

def test_stats_by_hand():
    e = pd.DataFrame(dict(slice=['x'] * 4 + ['y'] * 2, test=[0, 0, 1, 1, 2, 2], train=[0, 1, 0, 2, 0, 1],
                          influence=[-4.0, 1.0, -2.0, 3.0, -6.0, 2.0]))
    t = slice_stats(e)
    assert t.loc['x', 'mean |I| helpful'] == 3.0 and t.loc['x', 'mean |I| harmful'] == 2.0
    assert t.loc['x', 'edges helpful'] == 2 and t.loc['y', 'edges harmful'] == 1 and t.loc['x', 'test points'] == 2
    corr, pairs = slice_correlations(e)
    # mean signed influence per training point: x: {0: -3, 1: 1, 2: 3}; y: {0: -6, 1: 2}
    assert pairs.loc['x', 'y'] == 2 and pairs.loc['x', 'x'] == 3 and pairs.loc['y', 'y'] == 2
    assert math.isnan(corr.loc['x', 'y'])             # 2 pairs: too few for a correlation
    e2 = pd.concat([e, pd.DataFrame(dict(slice=['y'], test=[3], train=[2], influence=[6.0]))])
    corr2, _ = slice_correlations(e2)                # y = 2·x on the three shared points
    assert abs(corr2.loc['x', 'y'] - 1) < 1e-12

def test_layout_puts_training_points_near_what_they_influence():
    rng = np.random.default_rng(0)
    tests = pd.DataFrame(dict(slice=['A'] * 10 + ['B'] * 10 + ['C'] * 10, test=range(30)))
    rows = []
    for i in range(40):   # training point i influences slice i % 3 strongly, the others weakly
        for t, s in zip(tests.test, tests.slice):
            strong = s == 'ABC'[i % 3]
            rows.append(dict(slice=s, test=t, train=i, influence=rng.choice([-1, 1]) * (5.0 if strong else 0.5) * rng.uniform(0.5, 1)))
    e = pd.DataFrame(rows)
    tpos, rpos = circular_layout(e)
    assert all(abs(math.hypot(*p) - 1) < 1e-12 for p in tpos.values()) and all(math.hypot(*p) <= 0.85 + 1e-12 for p in rpos.values())
    T = {s: np.array([tpos[t] for t in tests.test[tests.slice == s]]) for s in 'ABC'}
    for i, p in rpos.items():
        d = {s: np.linalg.norm(T[s] - p, axis=1).mean() for s in 'ABC'}
        assert min(d, key=d.get) == 'ABC'[i % 3], (i, d)
    # the position minimises the |I|-weighted squared distance (here over the disk it is confined to)
    for i in (0, 1, 2):
        g = e[e.train == i]; Y = np.array([tpos[t] for t in g.test]); w = g.influence.abs().to_numpy()
        f = lambda p: (w * ((Y - p) ** 2).sum(1)).sum()
        cand = rng.uniform(-0.85, 0.85, (500, 2)); cand = cand[np.linalg.norm(cand, axis=1) <= 0.85]
        assert f(np.array(rpos[i])) <= min(f(c) for c in cand) + 1e-9

def test_layout_groups_and_top_edges():
    e = pd.DataFrame(dict(slice=['A', 'A', 'B', 'B'], test=[0, 0, 1, 1], train=[0, 1, 0, 2], influence=[1.0, -2.0, 3.0, -0.5]))
    tpos, rpos = circular_layout(e, groups={0: 'g1', 1: 'g2', 2: 'g1'}, radii=(0.3, 0.6))
    assert abs(math.hypot(*rpos[0]) - 0.3) < 1e-12 and abs(math.hypot(*rpos[1]) - 0.6) < 1e-12
    assert np.allclose(np.array(rpos[1]) / 0.6, tpos[0])          # one neighbour: straight towards it
    te = top_edges(e, 1)
    assert sorted(te.influence.tolist()) == [-2.0, 3.0]
    with pytest.raises(InfluenceInputError, match='No edges'): circular_layout(e.iloc[:0])
    with pytest.raises(InfluenceInputError, match='radii'): circular_layout(e, groups={0: 'a', 1: 'b', 2: 'c'}, radii=(0.5,))

def test_group_stats():
    from fastif_nb.apps.graph import group_stats
    e = pd.DataFrame(dict(slice=['A', 'A', 'B', 'B'], test=[0, 0, 1, 1], train=[0, 1, 0, 2], influence=[1.0, -2.0, 3.0, -0.5]))
    t = group_stats(e, {0: 'g1', 1: 'g2', 2: 'g1'})
    assert t.loc['g1', 'A'] == 1.0 and t.loc['g1', 'B'] == 1.75 and t.loc['g2', 'A'] == 2.0 and math.isnan(t.loc['g2', 'B'])
    assert t.loc['g1', 'training points'] == 2
