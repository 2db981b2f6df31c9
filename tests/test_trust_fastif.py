"""Issue 9, FastIF side of the engine: settings that cannot work fail at construction; explanations carry the solve's
certificate and error bars. (The missing-`__main__`-guard hint lives in WorkerPool: tests/test_pool.py.)"""
import pytest
from fastif_nb.errors import InfluenceInputError
from fastif_nb.testing import tiny_bert, offline_tokenizer
from fastif_nb.data import load_mnli
from fastif_nb.lissa import LiSSA
import fastif_nb.fastif as F

@pytest.fixture(scope='module')
def small():
    model, tok, train = tiny_bert(layers=2), offline_tokenizer(), load_mnli('train').subset(range(40))
    fif = F.FastIF(model, tok, train, n_frozen_layers=1, solver=LiSSA(depth=20, batch_size=4, repeats=2, damping=0.1, scale=10.),
                   progress=False)
    return model, tok, train, fif

def test_sdpa_attention_is_refused(small):
    model, tok, train, _ = small
    from transformers import BertForSequenceClassification
    sdpa = BertForSequenceClassification(model.config.__class__(**{**model.config.to_dict(), 'attn_implementation': 'sdpa'})).eval()
    with pytest.raises(InfluenceInputError, match=r"(?s)eager.*attn_implementation='eager'"): F.FastIF(sdpa, tok, train)

@pytest.mark.parametrize('kw,msg', [(dict(max_length=0), 'max_length'), (dict(max_length=2.5), 'max_length'), (dict(batch_size=0), 'batch_size')])
def test_bad_settings_at_construction(small, kw, msg):
    model, tok, train, _ = small
    with pytest.raises(InfluenceInputError, match=msg): F.FastIF(model, tok, train, **kw)

def test_explain_carries_certificate_and_error_bars(small):
    *_, fif = small
    ex = fif.explain(load_mnli('dev_matched').subset(range(2)), k=10)
    d = ex.to_dict(2)
    assert ex.stderr.shape == (2, 10) and d[0]['residual'] == ex.residual and d[0]['stability'] is not None
    assert all(e['stderr'] > 0 for e in d[0]['helpful'] + d[0]['harmful'])
    with pytest.raises(InfluenceInputError, match='k must be'): fif.explain(load_mnli('dev_matched').subset(range(2)), k=0)

