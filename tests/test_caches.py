"""Caches that cannot lie: a fine-tuned model cache whose weights were bit-flipped, truncated or deleted, or whose
settings file was cut short, is rebuilt with a message naming the folder and the reason; the rebuilt model is the one
the settings produce. Tiny backbone, tmp cache folder (never the shared ~/.cache/fastif_nb)."""
import json, struct
from pathlib import Path
import pytest, torch
from fastif_nb.finetune import train_or_load
from fastif_nb.model import _quiet_hf

@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
    "A tiny bare BERT encoder (like MiniLM, each train_or_load adds a head) with the offline tokenizer."
    from fastif_nb.testing import tiny_bert, offline_tokenizer
    d = tmp_path_factory.mktemp('backbone')
    with _quiet_hf(): tiny_bert(layers=3).bert.save_pretrained(d); offline_tokenizer().save_pretrained(d)
    return d

@pytest.fixture
def fresh(backbone, tmp_path, capsys):
    "(train_or_load keyword arguments, the first model, its info) of a freshly trained and saved tiny model."
    kw = dict(cache_dir=tmp_path, n_train=40, n_dev=24, n_frozen_layers=2, epochs=1, backbone=backbone, progress=False)
    m, _, info = train_or_load(**kw); capsys.readouterr()
    return kw, m, info

def _tensor_offset(path:Path, name_part:str)->int:
    "Byte offset in a safetensors file of the first tensor whose name contains `name_part`."
    raw = path.read_bytes(); n = struct.unpack('<Q', raw[:8])[0]; header = json.loads(raw[8:8 + n])
    name = next(k for k in header if name_part in k)
    return 8 + n + header[name]['data_offsets'][0]

def _flip(path:Path, offset:int, mask:int=0x40):
    raw = bytearray(path.read_bytes()); raw[offset] ^= mask; path.write_bytes(bytes(raw))

def _same(m1, m2): return all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))

def _reload(kw, capsys):
    m, _, info = train_or_load(**kw); return m, info, capsys.readouterr().out

def test_checksums_are_recorded_and_checked(fresh, capsys):
    kw, m1, info = fresh
    folder = Path(info['folder'])
    saved = json.loads((folder / 'fastif_settings.json').read_text())
    from fastif_nb.finetune import _sha256
    assert saved['checksums'] == {'model.safetensors': _sha256(folder / 'model.safetensors')}
    m2, info2, out = _reload(kw, capsys)
    assert info2['loaded'] and _same(m1, m2) and 'weights match their sha256' in out

@pytest.mark.parametrize('damage,why', [
    ('bitflip', 'model.safetensors does not match the sha256 recorded when it was saved'),
    ('truncate', 'model.safetensors does not match the sha256 recorded when it was saved'),
    ('delete', 'the weights file model.safetensors is missing'),
    ('settings', 'its fastif_settings.json is truncated or corrupt'),
])
def test_damaged_cache_is_rebuilt_with_a_message(damage, why, fresh, capsys):
    kw, m1, info = fresh
    folder = Path(info['folder']); w = folder / 'model.safetensors'
    if damage == 'bitflip': _flip(w, _tensor_offset(w, 'encoder.layer.2.intermediate.dense.weight') + 3)  # header intact, one exponent bit of a trained weight
    if damage == 'truncate': w.write_bytes(w.read_bytes()[:len(w.read_bytes()) // 2])
    if damage == 'delete': w.unlink()
    if damage == 'settings': (folder / 'fastif_settings.json').write_text((folder / 'fastif_settings.json').read_text()[:100])
    m2, info2, out = _reload(kw, capsys)
    assert f'The cached model at {folder} cannot be used: {why}' in out and 'Fine-tuning it again' in out, out
    assert 'Loaded' not in out and 'dev-matched accuracy' in out  # the accuracy printed is the rebuilt model's, measured now
    assert not info2['loaded'] and _same(m1, m2)  # the settings reproduce the model
    m3, info3, out = _reload(kw, capsys)        # and the rebuilt cache is sound again
    assert info3['loaded'] and _same(m1, m3)

def test_older_cache_without_checksums_is_checked_by_its_weight_norm(fresh, capsys):
    kw, m1, info = fresh
    folder = Path(info['folder']); meta = folder / 'fastif_settings.json'
    legacy = json.loads(meta.read_text()); legacy.pop('checksums'); meta.write_text(json.dumps(legacy))
    m2, info2, out = _reload(kw, capsys)
    assert info2['loaded'] and 'Σθ² matches' in out and _same(m1, m2)
    w = folder / 'model.safetensors'; _flip(w, _tensor_offset(w, 'encoder.layer.2.intermediate.dense.weight') + 3)
    m3, info3, out = _reload(kw, capsys)
    assert 'cannot be used: its trained weights have Σθ² =' in out and 'not the' in out, out
    assert not info3['loaded'] and _same(m1, m3)
