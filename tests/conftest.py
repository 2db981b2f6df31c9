"""Shared test fixtures, from `fastif_nb.testing`: a tiny randomly initialised BERT and the offline tokenizer; and an
L2 logistic regression on real data (breast cancer) fitted to convergence, for the applications' convex checks."""
import pytest, torch
import torch.nn as nn
from fastif_nb.testing import tiny_bert, offline_tokenizer

@pytest.fixture(scope='module')
def tiny():
    "(tiny random BERT, the real MiniLM tokenizer)."
    return tiny_bert(), offline_tokenizer()

def cancer_logreg(n_test:int=6, weight_decay:float=0.01, label_noise:float=0.0)->tuple:
    "(task, train, test, init): L2 logistic regression on 300 breast-cancer rows (labels flipped at `label_noise`), L-BFGS-fitted."
    from sklearn.datasets import load_breast_cancer
    from fastif_nb.task import ClassificationTask
    from fastif_nb.apps.retrain import fit_top, load_flat
    torch.manual_seed(0)
    X, y = load_breast_cancer(return_X_y=True)
    X = torch.tensor((X - X.mean(0)) / X.std(0)); y = torch.tensor(y)
    yn = y.clone()
    if label_noise: flip = torch.rand(len(y)) < label_noise; yn[flip] = 1 - yn[flip]
    perm = torch.randperm(len(X))
    train = torch.utils.data.TensorDataset(X[perm[:300]], yn[perm[:300]])
    test = torch.utils.data.TensorDataset(X[perm[300:300 + n_test]], y[perm[300:300 + n_test]])
    task = ClassificationTask(nn.Linear(30, 2).double().eval(), weight_decay=weight_decay, no_decay=())
    init = torch.zeros(task.n_params, dtype=torch.float64)
    load_flat(task, fit_top(task, train, init=init, optimizer='lbfgs'))
    return task, train, test, init
