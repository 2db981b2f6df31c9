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
