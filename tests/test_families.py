"""Every family adapter on tiny random classifiers built offline from a config: the cached prefix + top layers give the
full model's logits at every split point (over other batches' padding), the same per-example gradients and HVPs as the
full model with the lower layers frozen; unsupported models get a clear error; plain PyTorch models keep working."""
import pytest, torch
from transformers import AutoConfig, AutoModelForSequenceClassification
from fastif_nb.families import FAMILIES, UnsupportedModelError, family_of
from fastif_nb.hvp import hvp
from fastif_nb.model import cache_prefix, cached_collate, freeze, n_layers, split_at
from fastif_nb.task import ClassificationTask, InfluenceInputError
from fastif_nb.text import TokenizedDataset

CONFIGS = {  # model_type -> extra config; two DeBERTa variants (v3-like; v2-xlarge-like with the layer-0 convolution)
    'bert': {}, 'roberta': dict(pad_token_id=1), 'distilbert': {}, 'electra': dict(embedding_size=16),
    'deberta-v2': dict(relative_attention=True, position_buckets=8, norm_rel_ebd='layer_norm', pos_att_type=['p2c', 'c2p']),
    'deberta-v2-conv': dict(relative_attention=True, position_buckets=8, norm_rel_ebd='layer_norm', pos_att_type=['p2c', 'c2p'],
                            conv_kernel_size=3, conv_act='gelu', type_vocab_size=2),
}

def tiny(name, seed=0, num_labels=3):
    "A 3-layer, 32-wide random classifier of a family, eager attention, eval mode."
    mt = name.replace('-conv', '')
    size = dict(dim=32, n_layers=3, n_heads=2, hidden_dim=37) if mt == 'distilbert' else \
           dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37)
    cfg = AutoConfig.for_model(mt, **{**dict(vocab_size=100, num_labels=num_labels, max_position_embeddings=64), **size, **CONFIGS[name]})
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(cfg, attn_implementation='eager').eval()

def data(model, n=14, seed=0):
    "n random sequences of 3..20 tokens (ids 5..99, never a pad id), segment ids where the model has token types."
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(3, 21, (n,), generator=g).tolist()
    ids = [torch.randint(5, 100, (l,), generator=g) for l in lens]
    types = getattr(model.config, 'type_vocab_size', 0) > 0 and model.config.model_type != 'roberta'
    tts = [(torch.arange(l) >= l // 2).long() for l in lens] if types else None
    return TokenizedDataset(ids, torch.randint(0, 3, (n,), generator=g), tts, pad_token_id=getattr(model.config, 'pad_token_id', 0) or 0)

def full_logits(model, ds, idx):
    b = ds.collate([ds[i] for i in idx])
    with torch.no_grad(): return model(**{k: v for k, v in b.items() if k != 'labels'}).logits

@pytest.mark.parametrize('name', list(CONFIGS))
def test_cached_prefix_logits_equal_full_model(name):
    model = tiny(name); ds = data(model)
    assert family_of(model).name == name.replace('-conv', '') and n_layers(model) == 3
    idx = [4, 0, 13, 7, 11, 2]  # other batches (and padding) than the cache's
    ref = full_logits(model, ds, idx)
    for n in range(4):
        cds = cache_prefix(model, ds, n, batch_size=3, progress=False)
        _, top = split_at(model, n)
        with torch.no_grad(): got = top(**cached_collate([cds[i] for i in idx])).logits
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('name', list(CONFIGS))
def test_top_gradients_and_hvp_equal_full_model(name):
    "Per-example gradients and an HVP of the top task == those of the full-model task over the same (trainable) parameters."
    model = tiny(name); ds = data(model)
    names = freeze(model, 2)
    cds = cache_prefix(model, ds, 2, progress=False)
    _, top = split_at(model, 2)
    t_full = ClassificationTask(model, weight_decay=0.01, collate_fn=ds.collate)
    t_top = ClassificationTask(top, weight_decay=0.01, collate_fn=cached_collate)
    assert t_top.names == t_full.names == names and len(names) > 0
    assert not any('embeddings' in n or '.layer.0.' in n or '.layer.1.' in n for n in names)
    idx = [1, 5, 12, 3]
    g_full, g_top = t_full.per_example_grads(t_full.batch(ds, idx)), t_top.per_example_grads(t_top.batch(cds, idx))
    assert g_full.abs().max() > 0
    torch.testing.assert_close(g_top, g_full, atol=1e-5, rtol=1e-4)
    v = torch.randn(t_full.n_params, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hvp(t_top, t_top.batch(cds, idx), v), hvp(t_full, t_full.batch(ds, idx), v), atol=1e-5, rtol=1e-4)

def test_top_parameter_names_are_the_models():
    for name in CONFIGS:
        model = tiny(name); full = dict(model.named_parameters())
        _, top = split_at(model, 1)
        for n, p in top.named_parameters(): assert full[n] is p, (name, n)

def test_deberta_shared_relative_embeddings_stay_frozen():
    "DeBERTa's relative embeddings feed the prefix too: never trainable in the top (the cache would go stale)."
    model = tiny('deberta-v2')
    _, top = split_at(model, 1)
    assert not top.deberta.encoder.rel_embeddings.weight.requires_grad
    assert not any('rel_embeddings' in n or 'encoder.LayerNorm' in n for n in ClassificationTask(top).names)
    assert any('rel_embeddings' in n for n in freeze(model, 1, freeze_embeddings=False))

def test_features_of_top_match_full_model_hidden_states():
    "TopLayers.hidden (used for the kNN features) is the model's last hidden state, for every family."
    for name in CONFIGS:
        model = tiny(name); ds = data(model)
        b = ds.collate([ds[i] for i in range(5)])
        inputs = {k: v for k, v in b.items() if k != 'labels'}
        prefix, top = split_at(model, 2)
        with torch.no_grad():
            ref = model(**inputs, output_hidden_states=True).hidden_states[-1]
            got = top.hidden(prefix(**inputs), b['attention_mask'])
        m = b['attention_mask'].bool()
        torch.testing.assert_close(got[m], ref[m], atol=1e-5, rtol=1e-5)

def test_unsupported_models_get_a_clear_error():
    gpt2 = AutoModelForSequenceClassification.from_config(AutoConfig.for_model('gpt2', n_embd=32, n_layer=2, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0))
    for m in (gpt2, torch.nn.Linear(3, 2)):
        with pytest.raises(UnsupportedModelError, match="Supported: bert .*roberta.*distilbert.*deberta-v2.*electra") as e:
            split_at(m, 1)
        assert "ClassificationTask(model, params=...)" in str(e.value)
    from transformers import BertModel
    with pytest.raises(UnsupportedModelError, match="not a bert \\*ForSequenceClassification"): freeze(BertModel(tiny('bert').config), 1)
    assert issubclass(UnsupportedModelError, InfluenceInputError) and set(FAMILIES) == {'bert', 'roberta', 'distilbert', 'deberta-v2', 'electra'}

def test_plain_pytorch_model_still_works_through_the_engine():
    "A non-HF model: ClassificationTask + Exact solve; influence equals the closed form -g_testᵀ(H+λI)⁻¹g_train."
    from fastif_nb.influence import influence
    from fastif_nb.solvers import Exact
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    X, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    train = list(zip(X, y)); test = [(X[0] + 0.1, y[0])]
    task = ClassificationTask(net, weight_decay=0.01)
    res = influence(task, train, test, Exact(damping=0.0))
    flat = task.flat_params()
    H = torch.autograd.functional.hessian(lambda f: task.objective(task.batch(train, range(12)), f), flat)
    g_tr = task.per_example_grads(task.batch(train, range(12)))
    g_te = task.per_example_grads(task.batch(test, [0]))
    ref = -(g_te @ torch.linalg.solve(H, g_tr.T))
    torch.testing.assert_close(res.scores, ref, atol=1e-5, rtol=1e-4)
