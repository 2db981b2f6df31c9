"""Influence-aware candidate selection: the exact influence of the classification head (`HeadSelector`) and a count-sketched Gauss–Newton influence of all parameters (`SketchSelector`), as drop-in alternatives to the L2 kNN of `FeatureIndex.search`."""

from __future__ import annotations
import math
import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm
from fastcore.basics import patch
from fastif_nb.errors import InfluenceInputError
from fastif_nb.task import Task, _split_batch

def head_linear(model:nn.Module)->nn.Linear:
    "The final `nn.Linear` of a classifier: `model.classifier`, `model.classifier.out_proj`, `model.score` or the model itself."
    if isinstance(model, nn.Linear): return model
    for path in ('classifier', 'classifier.out_proj', 'score', 'head'):
        m = model
        for a in path.split('.'): m = getattr(m, a, None)
        if isinstance(m, nn.Linear): return m
    raise InfluenceInputError(
        f"Cannot find the classification head of {type(model).__name__}: expected an nn.Linear at .classifier, "
        ".classifier.out_proj or .score (or the model itself). Pass head=<the final nn.Linear> explicitly.")

def head_inputs(task:Task,             # the task (its model and collate function)
                data,                  # map-style dataset of training or test items with labels
                head:nn.Linear=None,   # the final linear layer (default: `head_linear(task.model)`)
                batch_size:int=64,     # examples per forward pass
                progress:bool=True,    # progress bar
               )->tuple:               # (inputs of the head X [N, d], probabilities P [N, C], labels y [N])
    "What the classification head sees and says for every item: its input features, its softmax and the label."
    if len(data) == 0: raise InfluenceInputError("The dataset is empty: no head features to compute.")
    head = head or head_linear(task.model)
    got, X, P, Y = {}, [], [], []
    hook = head.register_forward_hook(lambda m, i, o: got.update(x=i[0].detach(), z=o.detach()))
    try:
        with torch.no_grad():
            for s in tqdm(range(0, len(data), batch_size), desc='head features', disable=not progress, leave=False):
                args, kw, y = _split_batch(task.batch(data, range(s, min(s + batch_size, len(data)))))
                task.model(*args, **kw)
                x, z = got['x'], got['z']
                if x.dim() != 2: x, z = x[:, 0], z[:, 0]   # a head applied per position: position 0 reaches the loss
                X.append(x.reshape(len(y), -1)); P.append(z.reshape(len(y), -1).softmax(-1)); Y.append(torch.as_tensor(y).reshape(-1))
    finally: hook.remove()
    if not got: raise InfluenceInputError(f"The head {head} was not called by the model's forward: pass the right head=.")
    return torch.cat(X), torch.cat(P), torch.cat(Y).long()

def _aug(X): return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype, device=X.device)], 1)

def head_grads(X:torch.Tensor, # head inputs [N, d]
               P:torch.Tensor, # softmax outputs [N, C]
               y:torch.Tensor, # labels [N]
              )->torch.Tensor: # per-example gradients [N, C·(d+1)], weight rows then... see below
    "Per-example cross-entropy gradients w.r.t. [W | b] of the head, (p − e_y) ⊗ [x, 1], flattened row-major."
    R = P - torch.nn.functional.one_hot(y, P.shape[1]).to(P)
    return (R[:, :, None] * _aug(X)[:, None, :]).flatten(1)

def head_hessian(X:torch.Tensor, P:torch.Tensor, # head inputs [N, d] and softmax outputs [N, C]
                 decay:float=0.0,                # 2·weight_decay on the weight entries
                 decay_bias:float=0.0,           # ... on the bias entries (0 under the usual NO_DECAY)
                 chunk:int=65536,                # rows per accumulation step
                )->torch.Tensor:                 # [C(d+1), C(d+1)]
    "Exact Hessian of the mean cross-entropy w.r.t. [W | b]: (1/N) Σ (diag p − p pᵀ) ⊗ x̃x̃ᵀ, plus the decay term."
    N, C, d1 = len(X), P.shape[1], X.shape[1] + 1
    H = torch.zeros(C, d1, C, d1, dtype=torch.float64)
    for s in range(0, N, chunk):
        Xa, Pc = _aug(X[s:s + chunk]).double(), P[s:s + chunk].double()
        A = torch.diag_embed(Pc) - Pc[:, :, None] * Pc[:, None, :]   # [n, C, C]
        for c in range(C):
            for e in range(c, C):
                B = (Xa * A[:, c, e, None]).T @ Xa
                H[c, :, e] += B
                if e != c: H[e, :, c] += B
    H = H.reshape(C * d1, C * d1) / N
    if decay or decay_bias: H += torch.diag(torch.cat([torch.full((d1 - 1,), float(decay)), torch.tensor([float(decay_bias)])]).repeat(C).double())
    return H

class HeadSelector:
    "Candidate selection by the exact influence of the classification head: g_testᵀ(H_head+λI)⁻¹g_i, searched for top-|·|."
    def __init__(self, X, R, factor, damping:float, C:int, head=None):
        self.X, self.R, self.factor, self.damping, self.C, self.head = X, R, factor, damping, C, head
    @property
    def n(self): return len(self.X)
    @property
    def dim(self): return self.C * (self.X.shape[1] + 1)
    def __len__(self): return self.n
    def __repr__(self): return f"HeadSelector(n={self.n:,}, head parameters={self.dim:,}, damping={self.damping:g})"

@patch(cls_method=True)
def from_features(cls:HeadSelector,
                  X:torch.Tensor,          # head inputs of the training set [N, d]
                  P:torch.Tensor,          # the head's softmax outputs [N, C]
                  y:torch.Tensor,          # training labels [N]
                  damping:float=0.01,      # λ added to the head Hessian (> 0: softmax's shift direction is flat)
                  weight_decay:float=0.0,  # the objective's weight decay (its 2·wd enters H on the weights)
                  decay_bias:bool=False,   # whether the decay also covers the bias
                  head=None,               # the head module (kept to compute test features)
                 )->HeadSelector:
    "Factor the head Hessian once from precomputed features (N may be large: only [N, d] and [N, C] are kept)."
    X, P, y = torch.as_tensor(X), torch.as_tensor(P), torch.as_tensor(y).long()
    if X.dim() != 2 or P.dim() != 2 or len(X) != len(P) or len(y) != len(X): raise InfluenceInputError(
        f"Need X [N, d], P [N, C] and y [N] with one N; got {tuple(X.shape)}, {tuple(P.shape)}, {tuple(y.shape)}.")
    if len(X) == 0: raise InfluenceInputError("No training points: the selector needs at least one.")
    if not (torch.isfinite(X).all() and torch.isfinite(P).all()): raise InfluenceInputError(
        "Non-finite head features or probabilities: check the model and inputs.")
    if y.min() < 0 or y.max() >= P.shape[1]: raise InfluenceInputError(
        f"Labels must be class ids in [0, {P.shape[1]}); got values in [{int(y.min())}, {int(y.max())}].")
    if not (isinstance(damping, (int, float)) and damping >= 0): raise InfluenceInputError(f"damping must be a number >= 0; got {damping!r}.")
    H = head_hessian(X, P, 2 * weight_decay, 2 * weight_decay if decay_bias else 0.0)
    H += damping * torch.eye(len(H), dtype=H.dtype)
    factor, info = torch.linalg.cholesky_ex(H)
    if info: raise InfluenceInputError(
        f"The head Hessian + damping·I is not positive definite (damping={damping:g}); raise damping (e.g. 1e-3 or more).")
    R = (P - torch.nn.functional.one_hot(y, P.shape[1]).to(P)).float()
    return cls(X.float(), R, factor, float(damping), P.shape[1], head)

@patch(cls_method=True)
def build(cls:HeadSelector,
          task:Task,              # the task whose training objective the influence is of
          train,                  # training dataset (map-style, with labels)
          damping:float=0.01,     # λ added to the head Hessian
          head:nn.Linear=None,    # the final linear layer (default: `head_linear(task.model)`)
          batch_size:int=64,      # examples per forward pass
          progress:bool=True,     # progress bar
         )->HeadSelector:
    "Run the model once over `train`, keep the head's inputs and residuals, and factor the exact head Hessian."
    head = head or head_linear(task.model)
    if head.bias is None: raise InfluenceInputError(f"The head {head} has no bias; HeadSelector models a Linear head with a bias.")
    X, P, y = head_inputs(task, train, head, batch_size, progress)
    names = {id(p): n for n, p in task.model.named_parameters()}
    dw, db = (names.get(id(getattr(head, a))) in task.decayed for a in ('weight', 'bias'))
    if not dw and db: raise InfluenceInputError("A decayed head bias with an undecayed weight is not supported; decay both or neither.")
    return cls.from_features(X, P, y, damping, task.weight_decay if dw else 0.0, db, head)

@patch
def preconditioned(self:HeadSelector, Xq:torch.Tensor, Pq:torch.Tensor, yq:torch.Tensor)->torch.Tensor:
    "s_q = (H_head+λI)⁻¹ g_q for test points given by their head inputs, probabilities and labels, as [m, C, d+1]."
    G = head_grads(torch.as_tensor(Xq).double(), torch.as_tensor(Pq).double(), torch.as_tensor(yq).long())
    S = torch.cholesky_solve(G.T, self.factor).T
    return S.reshape(len(G), self.C, -1).float()

@patch
def dots(self:HeadSelector, S:torch.Tensor, chunk:int=65536)->torch.Tensor:
    "g_iᵀ s_q for all training points i, [m, N], from preconditioned queries S [m, C, d+1] (no [N, C(d+1)] matrix formed)."
    out = []
    for s in range(0, self.n, chunk):
        Xa = _aug(self.X[s:s + chunk])                          # [n, d+1]
        out.append(torch.einsum('nj,mcj,nc->mn', Xa, S, self.R[s:s + chunk]))
    return torch.cat(out, 1)

def _query_inputs(self, test, task, batch_size):
    if isinstance(test, (tuple, list)) and len(test) == 3 and all(isinstance(t, torch.Tensor) for t in test): return test
    if task is None: raise InfluenceInputError(
        "Pass the task (search(test, k, task=task)) to compute the test points' head features, or (X, P, y) tensors.")
    return head_inputs(task, test, self.head, batch_size, progress=False)

@patch
def influence(self:HeadSelector,
              test,                 # test dataset (with the labels to explain), or (X [m, d], P [m, C], y [m]) tensors
              task:Task=None,       # the task (needed when `test` is a dataset)
              batch_size:int=64,    # examples per forward pass
             )->torch.Tensor:       # [m, N] head-only influence (positive = harmful, as `influence`)
    "The exact influence of every training point on every test point, restricted to the classification head."
    Xq, Pq, yq = _query_inputs(self, test, task, batch_size)
    return -self.dots(self.preconditioned(Xq, Pq, yq))

@patch
def search(self:HeadSelector,
           test,                 # test dataset, or (X [m, d], P [m, C], y [m]) tensors
           k:int,                # candidates per test point
           task:Task=None,       # the task (needed when `test` is a dataset)
           which:str='abs',      # 'abs' (most helpful and most harmful, merged), 'harmful' or 'helpful'
           batch_size:int=64,    # examples per forward pass
          )->torch.Tensor:       # [m, k] training indices, most influential first
    "The k training points of largest head influence per test point (by |·|, or one sign)."
    if which not in ('abs', 'harmful', 'helpful'): raise InfluenceInputError(f"which={which!r}: use 'abs', 'harmful' or 'helpful'.")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= self.n): raise InfluenceInputError(
        f"k must be an integer in [1, {self.n}] (the training-set size); got {k!r}.")
    I = self.influence(test, task, batch_size)
    key = I.abs() if which == 'abs' else (I if which == 'harmful' else -I)
    return key.topk(int(k), dim=1).indices


def _logit_jacobians(task:Task, batch)->tuple:
    "Per-example Jacobians of what the loss sees, [B, C', p] (C' = 1: the margin z₁−z₀ when C = 2), logits and labels."
    from torch.func import functional_call, jacrev
    args, kw, y = _split_batch(batch)
    flat = task.flat_params()
    def f(fl):
        out = functional_call(task.model, task.unflatten(fl), args, kw)
        z = getattr(out, 'logits', out)
        return (z[:, 1:] - z[:, :1]) if z.shape[1] == 2 else z, z
    J, z = jacrev(f, has_aux=True)(flat)
    return J.detach(), z.detach(), torch.as_tensor(y).long()

class CountSketch:
    "A count sketch: each coordinate goes to one random bucket with a random sign (inner products kept in expectation)."
    def __init__(self, p:int,      # input dimension
                 dim:int,          # sketch dimension
                 seed:int=0):      # seeds the hash and the signs
        g = torch.Generator().manual_seed(seed)
        self.p, self.dim = p, dim
        self.bucket, self.sign = torch.randint(dim, (p,), generator=g), torch.randint(2, (p,), generator=g).float() * 2 - 1
    def __call__(self, V:torch.Tensor)->torch.Tensor:
        "V [..., p] -> [..., dim]."
        V2 = V.reshape(-1, self.p)
        out = torch.zeros(len(V2), self.dim, dtype=V.dtype, device=V.device)
        out.index_add_(1, self.bucket.to(V.device), V2 * self.sign.to(V))
        return out.reshape(*V.shape[:-1], self.dim)

class SketchSelector:
    "Candidate selection by influence in a count-sketched gradient space with the Gauss–Newton curvature (TRAK-like)."
    def __init__(self, G, factor, sketch, damping:float, dots=None):
        self.G, self.factor, self.sketch, self.damping, self.dots_ = G, factor, sketch, damping, dots
    @property
    def n(self): return len(self.G)
    @property
    def dim(self): return self.G.shape[1]
    def __len__(self): return self.n
    def __repr__(self): return f"SketchSelector(n={self.n:,}, dim={self.dim:,}, damping={self.damping:g})"

@patch(cls_method=True)
def build(cls:SketchSelector,
          task:Task,               # the task
          train,                   # training dataset (map-style, with labels)
          dim:int=4096,            # sketch dimension
          damping:float=0.01,      # λ added to the sketched curvature (use the solver's damping)
          batch_size:int=16,       # examples per Jacobian batch
          seed:int=0,              # seeds the sketch
          also_dot:torch.Tensor=None, # [p, m] vectors each exact training gradient is dotted with on the way (in .dots_ [N, m])
          progress:bool=True,      # progress bar
         )->SketchSelector:
    "One pass of per-example Jacobians over `train`: keep sketched gradients [N, dim], factor the sketched GGN + decay + λ."
    if len(train) == 0: raise InfluenceInputError("The training dataset is empty.")
    if not (isinstance(dim, int) and dim >= 1): raise InfluenceInputError(f"dim must be a positive integer; got {dim!r}.")
    if not (isinstance(damping, (int, float)) and damping > 0): raise InfluenceInputError(f"damping must be > 0; got {damping!r}.")
    sk = CountSketch(task.n_params, dim, seed)
    G, K, dots = [], torch.zeros(dim, dim, dtype=torch.float64), []
    for s in tqdm(range(0, len(train), batch_size), desc='sketched gradients', disable=not progress, leave=False):
        J, z, y = _logit_jacobians(task, task.batch(train, range(s, min(s + batch_size, len(train)))))
        p = z.softmax(-1)
        if z.shape[1] == 2:
            r = (p[:, 1] - (y == 1).to(p))[:, None]                       # ∂ℓ/∂(z₁−z₀)
            A = (p[:, 0] * p[:, 1])[:, None, None]                        # the margin's GGN weight
        else:
            r = p - torch.nn.functional.one_hot(y, z.shape[1]).to(p)
            A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        g = (r[:, :, None] * J).sum(1)                                    # exact per-example gradients [B, p]
        if also_dot is not None: dots.append(g @ also_dot.to(g))
        F = sk(J)                                                         # [B, C', dim]
        G.append(sk(g)); K += torch.einsum('bcd,bce,bef->df', F.double(), A.double(), F.double())
    K = K / len(train) + (2 * task.weight_decay + damping) * torch.eye(dim, dtype=torch.float64)
    factor = torch.linalg.cholesky(K)
    return cls(torch.cat(G), factor, sk, float(damping), torch.cat(dots) if dots else None)

@patch
def influence(self:SketchSelector, task:Task, test, batch_size:int=16)->torch.Tensor:
    "Sketched influence [m, N] of every training point on every test point (positive = harmful)."
    Gq = torch.cat([task.per_example_grads(task.batch(test, range(s, min(s + batch_size, len(test)))))
                    for s in range(0, len(test), batch_size)])
    S = torch.cholesky_solve(self.sketch(Gq).double().T, self.factor).to(self.G.dtype)   # [dim, m]
    return -(self.G @ S).T

@patch
def search(self:SketchSelector, task:Task, test, k:int, which:str='abs')->torch.Tensor:
    "The k training points of largest sketched influence per test point, [m, k]."
    if which not in ('abs', 'harmful', 'helpful'): raise InfluenceInputError(f"which={which!r}: use 'abs', 'harmful' or 'helpful'.")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= self.n): raise InfluenceInputError(
        f"k must be an integer in [1, {self.n}] (the training-set size); got {k!r}.")
    I = self.influence(task, test)
    return (I.abs() if which == 'abs' else (I if which == 'harmful' else -I)).topk(int(k), dim=1).indices
