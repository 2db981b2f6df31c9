"ClsTop (fastif_nb.clstop) against the Hugging Face top layers: logits, gradients, HVPs, JVPs, solves; shapes it refuses."
import warnings
import pytest, torch
import torch.nn as nn
from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.model import split_at, cached_collate, TopLayers
from fastif_nb.clstop import ClsTop, cls_top, cls_layer
from fastif_nb.hvp import hvp
from fastif_nb.influence import score_candidates, query_gradients as query_grads
from fastif_nb.solvers import CG

def bert(seed=0, layers=3, num_labels=3, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=37, vocab_size=100,
                     num_labels=num_labels, attn_implementation='eager', **kw)
    return BertForSequenceClassification(cfg).eval().to(dtype)

def roberta(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    cfg = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=100,
                        num_labels=3, attn_implementation='eager', max_position_embeddings=40)
    return RobertaForSequenceClassification(cfg).eval().to(dtype)

def items(n, dtype, L=9, d=32, seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    return [{'hidden_states': torch.randn(int(torch.randint(1, L + 1, (1,), generator=g)), d, generator=g).to(dtype),
             'labels': int(torch.randint(c, (1,), generator=g))} for _ in range(n)]

def rel(a, b): return ((a - b).abs().max() / b.abs().max()).item()

def tasks(model, n_frozen):
    return (ClassificationTask(split_at(model, n_frozen)[1], weight_decay=0.01, collate_fn=cached_collate),
            ClassificationTask(ClsTop(model, n_frozen), weight_decay=0.01, collate_fn=cached_collate))

CASES = [(torch.float32, 1e-6), (torch.float64, 1e-12)]

@pytest.mark.parametrize('dtype,tol', CASES)
@pytest.mark.parametrize('make,n_frozen', [(bert, 2), (bert, 1), (bert, 0), (roberta, 1)])
def test_same_as_hf(make, n_frozen, dtype, tol):
    model = make(dtype=dtype)
    ref, cls = tasks(model, n_frozen)
    assert [n for n, _ in ref.model.named_parameters()] == [n for n, _ in cls.model.named_parameters()] == ref.names == cls.names
    data = items(10, dtype)
    b = ref.batch(data, range(10))
    inp = {k: v for k, v in b.items() if k != 'labels'}
    assert rel(cls.model(**inp).logits, ref.model(**inp).logits) < tol
    assert rel(cls.per_example_grads(b), ref.per_example_grads(b)) < tol
    V = torch.randn(ref.n_params, 3, dtype=dtype)
    for m in ('double-backward', 'fwd-rev'): assert rel(hvp(cls, b, V, m), hvp(ref, b, V, m)) < tol
    for m in ('jvp', 'grad'):
        assert rel(score_candidates(cls, data, V, range(10), 4, m, False), score_candidates(ref, data, V, range(10), 4, m, False)) < tol

def test_cls_layer_matches_position0_with_padding():
    model = bert()
    X = torch.randn(4, 6, 32, dtype=torch.float64)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5, [1] * 2 + [0] * 4])
    from fastif_nb.families import _mask
    layer = model.bert.encoder.layer[-1]
    out = layer(X, _mask(model, X, mask)); out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(cls_layer(layer, X, mask), out[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(cls_layer(layer, X[:1]), out[:1, 0], rtol=0, atol=1e-12)  # no mask = no padding
    # padded positions do not matter at all
    X2 = X.clone(); X2[1, 4:] = 1e3
    torch.testing.assert_close(cls_layer(layer, X2, mask), cls_layer(layer, X, mask), rtol=0, atol=1e-12)

def test_same_cg_solve_and_influence():
    model = bert(num_labels=2)
    ref, cls = tasks(model, 2)
    train, test = items(24, torch.float64, c=2), items(3, torch.float64, seed=1, c=2)
    G = query_grads(cls, test)
    torch.testing.assert_close(G, query_grads(ref, test), rtol=0, atol=1e-12)
    a = CG(damping=10., tol=1e-10, maxiter=300).solve(cls, train, G.T, progress=False)
    b = CG(damping=10., tol=1e-10, maxiter=300).solve(ref, train, G.T, progress=False)
    assert rel(a, b) < 1e-8

class MeanHead(nn.Module):
    def __init__(self): super().__init__(); self.lin = nn.Linear(32, 3)
    def forward(self, h): return self.lin(h.mean(1))

def test_refusals_and_fallback():
    with pytest.raises(InfluenceInputError, match='no last layer'): ClsTop(bert(), 3)
    odd = bert(); odd.bert.pooler = None; odd.classifier = MeanHead().double()
    with pytest.raises(InfluenceInputError, match='pooler'): ClsTop(odd, 1)  # refused by the family adapter already
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    distil = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=100,
                                                                  attn_implementation='eager')).eval().double()
    with pytest.raises(InfluenceInputError, match='BERT-style layer is needed'): ClsTop(distil, 1)
    with pytest.warns(UserWarning, match='unstructured TopLayers'): t = cls_top(distil, 1)
    assert type(t) is TopLayers
    with pytest.raises(InfluenceInputError): cls_top(distil, 1, fallback=False)
    # a pooler that does not read position 0 passes the shape check but fails the numerical one
    sneaky = bert()
    class MeanPooler(nn.Module):
        def __init__(self, p): super().__init__(); self.dense, self.activation = p.dense, p.activation
        def forward(self, h): return self.activation(self.dense(h.mean(1)))
    sneaky.bert.pooler = MeanPooler(sneaky.bert.pooler)
    with pytest.raises(InfluenceInputError, match='does not read only position 0'): ClsTop(sneaky, 1)
    with pytest.raises(InfluenceInputError, match='not a BERT-family'): ClsTop(nn.Linear(3, 3), 0)

def test_drop_in_for_fastif(tiny):
    "FastIF with its task rebuilt on ClsTop (the hook FastIF would need: top=cls_top(...)) gives the same explanation."
    from fastif_nb.data import load_mnli
    from fastif_nb.fastif import FastIF
    model, tok = tiny
    fif = FastIF(model, tok, load_mnli('train').subset(range(40)), n_frozen_layers=3, progress=False,
                 solver=CG(damping=10., tol=1e-8, maxiter=200))
    dev = load_mnli('dev_matched').subset(range(2))
    ref = fif.explain(dev, k=15)
    fif.task = ClassificationTask(ClsTop(model, 3), weight_decay=fif.task.weight_decay, collate_fn=fif.train_cached.collate)
    new = fif.explain(dev, k=15)
    assert torch.equal(ref.indices, new.indices)
    torch.testing.assert_close(new.scores, ref.scores, rtol=1e-4, atol=1e-6 * ref.scores.abs().max().item())
