"Fast checks of fastif_nb.model on a tiny random BERT: split_at / cache_prefix reproduce the full model."
import pytest, torch
from fastif_nb.testing import tiny_bert
from fastif_nb.hvp import hvp
from fastif_nb.model import CachedDataset, cache_prefix, cached_collate, freeze, split_at
from fastif_nb.task import ClassificationTask, InfluenceInputError, top_layer_params
from fastif_nb.text import TokenizedDataset


@pytest.fixture(scope="module")
def data():
    "20 random 'sentence pairs' of 3..30 tokens ([CLS] a [SEP] b [SEP] with segment ids), labels 0..2."
    g = torch.Generator().manual_seed(0)
    ids, tts = [], []
    for _ in range(20):
        la, lb = torch.randint(1, 15, (2,), generator=g).tolist()
        a, b = torch.randint(1000, 30000, (la,), generator=g), torch.randint(1000, 30000, (lb,), generator=g)
        ids.append(torch.cat([torch.tensor([101]), a, torch.tensor([102]), b, torch.tensor([102])]))
        tts.append(torch.cat([torch.zeros(la + 2, dtype=torch.long), torch.ones(lb + 1, dtype=torch.long)]))
    return TokenizedDataset(ids, torch.randint(0, 3, (20,), generator=g), token_type_ids=tts)


def full_logits(model, ds, idx):
    b = ds.collate([ds[i] for i in idx])
    with torch.no_grad(): return model(**{k: v for k, v in b.items() if k != "labels"}).logits


@pytest.mark.parametrize("n", [0, 1, 3, 4])
def test_top_of_cache_equals_full_model(data, n):
    model = tiny_bert()
    cds = cache_prefix(model, data, n, batch_size=6, progress=False)
    assert isinstance(cds, CachedDataset) and len(cds) == len(data) and cds.n_frozen_layers == n
    assert torch.equal(cds.lengths, data.lengths)
    _, top = split_at(model, n)
    idx = [4, 0, 19, 7, 11]
    with torch.no_grad(): got = top(**cached_collate([cds[i] for i in idx])).logits
    torch.testing.assert_close(got, full_logits(model, data, idx), atol=1e-5, rtol=0)


def test_each_example_equals_unpadded_run(data):
    "Cached states of one example do not depend on the other examples of its batch (padding)."
    model = tiny_bert()
    prefix, _ = split_at(model, 2)
    cds = cache_prefix(model, data, 2, batch_size=7, progress=False)
    for i in (0, 5, 13):
        it = data[i]
        with torch.no_grad():
            alone = prefix(it["input_ids"][None], it["attention_mask"][None], it["token_type_ids"][None])[0]
        torch.testing.assert_close(cds[i]["hidden_states"], alone, atol=1e-5, rtol=0)


def test_gradients_and_hvp_match(data):
    model = tiny_bert()
    freeze(model, 2)
    cds = cache_prefix(model, data, 2, progress=False)
    _, top = split_at(model, 2)
    t_full = ClassificationTask(model, weight_decay=0.005, collate_fn=data.collate)
    t_top = ClassificationTask(top, weight_decay=0.005, collate_fn=cached_collate)
    assert t_top.names == t_full.names == top_layer_params(model, 2)
    idx = [1, 2, 3, 17]
    bf, bc = t_full.batch(data, idx), t_top.batch(cds, idx)
    torch.testing.assert_close(t_top.per_example_grads(bc), t_full.per_example_grads(bf), atol=1e-5, rtol=1e-4)
    V = torch.randn(t_full.n_params, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hvp(t_top, bc, V), hvp(t_full, bf, V), atol=1e-5, rtol=1e-4)


def test_parameters_are_shared():
    model = tiny_bert()
    prefix, top = split_at(model, 3)
    assert top.bert.encoder.layer["3"].attention.self.query.weight is model.bert.encoder.layer[3].attention.self.query.weight
    assert prefix.bert.embeddings.word_embeddings.weight is model.bert.embeddings.word_embeddings.weight
    assert [n for n, _ in top.named_parameters()] == top_layer_params(model, 3)


def test_bad_input(data):
    with pytest.raises(InfluenceInputError, match="Call model.eval"): cache_prefix(tiny_bert().train(), data, 2)
    for n in (-1, 5, 1.5):
        with pytest.raises(InfluenceInputError, match=r"outside \[0, 4\]"): split_at(tiny_bert(), n)
    with pytest.raises(InfluenceInputError, match="not a BERT-family"): split_at(torch.nn.Linear(2, 2), 1)
    with pytest.raises(InfluenceInputError, match="CachedDataset"): cached_collate([data[0]])


# ---- a cache of prefix states goes stale when the prefix changes ----
from fastif_nb.errors import StaleIndexError
from fastif_nb.model import prefix_fingerprint, check_prefix

def test_prefix_fingerprint_sees_every_prefix_change_and_only_those():
    m = tiny_bert(layers=3)
    fp = {n: prefix_fingerprint(m, n) for n in range(4)}
    assert len(set(fp.values())) == 4                                    # each split point covers other weights
    targets = [m.bert.embeddings.word_embeddings.weight, m.bert.embeddings.LayerNorm.bias, m.bert.encoder.layer[1].attention.self.key.weight]
    for t in targets:
        with torch.no_grad(): t.view(-1)[7] += 1e-6                          # a tiny change in one entry
        assert prefix_fingerprint(m, 2) != fp[2]
        with pytest.raises(StaleIndexError, match=r"embeddings \+ 2 encoder layers\) changed after the cached prefix states were computed"):
            check_prefix(m, 2, fp[2])
        with torch.no_grad(): t.view(-1)[7] -= 1e-6
        # float rounding may not restore the exact bits; rebuild the expectation only if it did not
        if prefix_fingerprint(m, 2) != fp[2]: fp[2] = prefix_fingerprint(m, 2)
    with torch.no_grad(): m.bert.encoder.layer[2].output.dense.weight.add_(1.)  # top layer (read live): not a prefix change
    check_prefix(m, 2, fp[2])
    with torch.no_grad(): m.bert.encoder.layer[1].output.dense.weight.copy_(tiny_bert(seed=1, layers=3).bert.encoder.layer[1].output.dense.weight)
    with pytest.raises(StaleIndexError, match="Rebuild the FastIF"): check_prefix(m, 2, fp[2])

def test_a_stale_fastif_cache_gives_other_scores_and_is_detected():
    "The case the check exists for: a FastIF whose frozen prefix changed after it was built scores with stale states."
    from fastif_nb.fastif import FastIF
    from fastif_nb.data import load_mnli
    from fastif_nb.solvers import CG
    from fastif_nb.testing import offline_tokenizer
    tok, train = offline_tokenizer(), load_mnli('train', num_labels=2).subset(range(24))
    test = load_mnli('dev_matched', num_labels=2).subset(range(2))
    m = tiny_bert(num_labels=2, layers=2)
    kw = dict(n_frozen_layers=1, solver=CG(damping=1.0, tol=1e-8, maxiter=200), progress=False)
    fif = FastIF(m, tok, train, **kw); fp = prefix_fingerprint(m, 1)
    with torch.no_grad(): m.bert.embeddings.word_embeddings.weight.mul_(1.5)   # e.g. the prefix fine-tuned further
    fresh = FastIF(m, tok, train, **kw).explain(test, k=None).scores
    fif.prefix_fp = None                                                     # without the check: silently different scores
    stale = fif.explain(test, k=None).scores
    assert (stale - fresh).abs().max() > 1e-3 * fresh.abs().max()
    with pytest.raises(StaleIndexError, match="Rebuild the FastIF"): check_prefix(fif.model, fif.n_frozen_layers, fp)
    fif.prefix_fp = fp                                                       # with it (the default): explain refuses
    with pytest.raises(StaleIndexError, match="Rebuild the FastIF"): fif.explain(test, k=None)
