"""Issue 9, FastIF side of the engine: settings that cannot work fail at construction; a parallel explain from a script
without a __main__ guard gets a hint; explanations carry the solve's certificate and error bars."""
import os, sys, types
import pytest, torch
from fastif_nb.errors import InfluenceInputError, WorkerError
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

@pytest.mark.parametrize('src,guarded', [("fif.explain(x, workers=2)\n", False), ("if __name__ == '__main__':\n    main()\n", True),
                                         ('if "__main__" == __name__: main()\n', True)])
def test_unguarded_script_detected(tmp_path, monkeypatch, src, guarded):
    f = tmp_path / 's.py'; f.write_text(src)
    monkeypatch.setitem(sys.modules, '__main__', types.SimpleNamespace(__file__=str(f)))
    assert (F._unguarded_main() is None) == guarded

def test_pool_start_failure_gets_the_guard_hint(small, tmp_path, monkeypatch):
    *_, fif = small
    f = tmp_path / 's.py'; f.write_text("fif.explain(x, workers=2)\n")
    monkeypatch.setitem(sys.modules, '__main__', types.SimpleNamespace(__file__=str(f)))
    def dies(*a, **k): raise WorkerError("Worker rank 0 (exit code 1) died without reporting")
    monkeypatch.setattr(F, 'WorkerPool', dies)
    with pytest.raises(WorkerError, match=r'(?s)__name__ == "__main__".*guard|guard.*__main__'): fif.pool(2)
