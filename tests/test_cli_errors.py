"""The `fastif` command on bad input, for every sub-command: a one-paragraph message on stderr, the documented exit
status, no traceback (the error families and their statuses are documented in nbs/09_cli.ipynb)."""
import pytest
from fastif_nb.cli import main, exit_code, EXIT_CODES
from fastif_nb.errors import FastIFError, InfluenceInputError, StaleIndexError, WorkerError, PeerError, LiSSADivergedError

BAD = {  # sub-command -> (arguments, part of the message); all fail before any model is loaded or trained
    'demo': (['demo', '--model', '/no/such/model'], '--model /no/such/model: no such folder'),
    'train': (['train', '--model', '/no/such/model'], 'no such folder'),
    'index': (['index', '--model', '/no/such/model', '--pooling', 'mean'], 'no such folder'),
    'explain': (['explain', '--k', '5'], 'Give a pair with --premise and --hypothesis'),
}

@pytest.mark.parametrize('cmd', list(BAD))
def test_bad_input_is_one_paragraph_and_exit_2(cmd, capsys):
    argv, msg = BAD[cmd]
    with pytest.raises(SystemExit) as e: main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(f'fastif {cmd}: error: ') and msg in err
    assert err.count('\n') == 1 and 'Traceback' not in err

def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as e: main(['explain', '--k', 'many'])
    assert e.value.code == 2 and 'invalid int value' in capsys.readouterr().err

def test_exit_codes_of_the_family():
    assert [exit_code(E("x")) for E in (InfluenceInputError, LiSSADivergedError, StaleIndexError, WorkerError, PeerError, OSError, FastIFError)] \
        == [2, 2, 3, 4, 4, 5, 1]
    assert list(EXIT_CODES)[-1] is FastIFError  # the base is the fallback


# ---- validate first: every argument is checked before the model is loaded ----
import json, os
from pathlib import Path

@pytest.fixture(scope='module')
def tiny_folder(tmp_path_factory):
    "A tiny random 2-label BERT saved with the offline tokenizer: a --model that would load in a second."
    from fastif_nb.testing import tiny_bert, offline_tokenizer
    d = tmp_path_factory.mktemp('tiny_model')
    tiny_bert(num_labels=2, layers=2).save_pretrained(d); offline_tokenizer().save_pretrained(d)
    return str(d)

@pytest.fixture
def no_model_load(monkeypatch):
    "Make any model load or fine-tune fail the test: a validation error must come before it."
    import fastif_nb.model, fastif_nb.finetune
    def boom(*a, **k): raise AssertionError('the model was loaded before the arguments were checked')
    monkeypatch.setattr(fastif_nb.model, 'load_classifier', boom)
    monkeypatch.setattr(fastif_nb.finetune, 'train_or_load', boom)

EARLY = [  # (arguments after the sub-command and --model, part of the message)
    (['explain', '--k', '-5', '--premise', 'a', '--hypothesis', 'b'], '--k must be >= 0 (0 = score all training examples); got -5'),
    (['explain', '--workers', '0', '--premise', 'a', '--hypothesis', 'b'], '--workers must be >= 1'),
    (['explain', '--top', '-1', '--premise', 'a', '--hypothesis', 'b'], '--n/--top must be >= 0; got -1'),
    (['explain', '--solver', 'lissa', '--depth', '0', '--premise', 'a', '--hypothesis', 'b'], '--depth must be >= 1'),
    (['explain', '--damping', '-1', '--premise', 'a', '--hypothesis', 'b'], '--damping must be a finite number >= 0'),
    (['explain', '--timeout', '0', '--premise', 'a', '--hypothesis', 'b'], '--timeout must be a finite number of seconds > 0'),
    (['explain', '--select', 'sketch', '--k', '0', '--premise', 'a', '--hypothesis', 'b'], '--select sketch chooses the k candidates to score'),
    (['explain', '--split', 'hans', '--indices', '0,x'], "--indices must be comma-separated integers, e.g. 0,1,2; got '0,x'"),
    (['explain', '--split', 'hans', '--indices', '3,30'], '--indices [30] outside [0, 30) of --split hans'),
    (['explain', '--split', 'hans', '--num-labels', '3'], 'HANS is 2-way'),
    (['explain', '--n-train', '50', '--k', '51', '--premise', 'a', '--hypothesis', 'b'], '--k 51 is more than the 50 training examples'),
    (['explain', '--premise', 'a', '--hypothesis', 'b', '--gold', 'maybe'], "--gold 'maybe' is not one of the 2 labels"),
    (['demo', '--workers', '0'], '--workers must be >= 1'),
    (['demo', '--n-dev', '-1'], '--n-dev must be >= 0'),
    (['index', '--n-train', '0'], '--n-train must be >= 1'),
    (['train', '--n-frozen-layers', '-1'], '--n-frozen-layers must be >= 0'),
]

@pytest.mark.parametrize('argv,msg', EARLY, ids=[' '.join(a[:3]) for a, _ in EARLY])
def test_bad_argument_fails_before_the_model_load(argv, msg, tiny_folder, tmp_path, no_model_load, capsys):
    with pytest.raises(SystemExit) as e: main([*argv, '--model', tiny_folder, '--cache-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err, err
    assert err.count('\n') == 1 and 'Traceback' not in err

def test_unwritable_cache_dir_fails_first(tmp_path, no_model_load, capsys):
    blocker = tmp_path / 'a_file'; blocker.write_text('x')  # a folder under a file cannot be made, even by root
    for cmd in (['train'], ['index'], ['demo'], ['explain', '--premise', 'a', '--hypothesis', 'b']):
        with pytest.raises(SystemExit) as e: main([*cmd, '--cache-dir', str(blocker / 'cache')])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f'--cache-dir {blocker / "cache"} is not a writable folder' in err, err
        assert 'pass --cache-dir with a folder you can write to' in err and 'Traceback' not in err

def test_fastif_cache_env_is_named(tmp_path, monkeypatch, no_model_load, capsys):
    blocker = tmp_path / 'f'; blocker.write_text('x'); monkeypatch.setenv('FASTIF_CACHE', str(blocker))
    with pytest.raises(SystemExit) as e: main(['index'])
    assert e.value.code == 2 and f'$FASTIF_CACHE {blocker} is not a writable folder' in capsys.readouterr().err

def test_model_folder_without_weights(tmp_path, no_model_load, capsys):
    (tmp_path / 'config.json').write_text('{}')
    with pytest.raises(SystemExit) as e: main(['index', '--model', str(tmp_path), '--cache-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'not a saved model folder (no weights' in err and 'model.safetensors' in err, err

def test_default_cache_matches_finetune(monkeypatch, tmp_path):
    from fastif_nb.cli import _cache_path, parser
    from fastif_nb.finetune import default_cache_dir
    monkeypatch.setenv('FASTIF_CACHE', str(tmp_path))
    assert _cache_path(parser().parse_args(['train'])) == default_cache_dir() == tmp_path

# ---- --json: stdout is one JSON document, every message on stderr ----
TINY = ['--n-train', '40', '--n-frozen-layers', '1', '--seed', '0']

@pytest.mark.parametrize('argv', [
    ['demo', '--k', '10', '--solver', 'lissa', '--depth', '5', '--n-dev', '1', '--n-hans', '1', '--n', '2'],
    ['explain', '--k', '10', '--solver', 'lissa', '--depth', '5', '--split', 'hans', '--indices', '0,1', '--n', '2'],
    ['index'],
    ['train', '--n-dev', '16'],
], ids=lambda a: a[0])
def test_json_output_is_json_only(argv, tiny_folder, tmp_path, capsys):
    main([*argv, *TINY, '--model', tiny_folder, '--cache-dir', str(tmp_path), '--json'])
    out, err = capsys.readouterr()
    res = json.loads(out)  # nothing but the JSON document on stdout
    if argv[0] in ('demo', 'explain'):
        assert isinstance(res, list) and len(res) == 2 and all(len(r['helpful']) == 2 for r in res)
    if argv[0] == 'index': assert res['n'] == 40 and res['d'] == 32
    if argv[0] == 'train': assert res['n_dev'] == 16 and 0 <= res['dev_accuracy'] <= 1
    if argv[0] != 'explain': assert err  # the progress messages went to stderr

def test_timeout_reaches_the_worker_pool(tiny_folder, tmp_path, capsys):
    "--timeout is the pool's job deadline: far too short a one is a WorkerError (exit 4) that names it."
    with pytest.raises(SystemExit) as e:
        main(['explain', *TINY, '--model', tiny_folder, '--cache-dir', str(tmp_path), '--k', '5', '--solver', 'lissa', '--depth', '5',
              '--premise', 'a', '--hypothesis', 'b', '--workers', '2', '--timeout', '0.01'])
    err = capsys.readouterr().err
    assert e.value.code == 4 and 'timeout=0.01s' in err and 'Traceback' not in err, err

def test_too_many_frozen_layers_fails_before_the_model_load(tiny_folder, tmp_path, no_model_load, capsys):
    with pytest.raises(SystemExit) as e: main(['index', '--model', tiny_folder, '--n-frozen-layers', '3', '--cache-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f'--n-frozen-layers 3 is more than the 2 encoder layers of --model {tiny_folder}' in err, err
    with pytest.raises(SystemExit) as e: main(['train', '--n-frozen-layers', '7', '--cache-dir', str(tmp_path)])
    assert e.value.code == 2 and 'is more than the 6 encoder layers of the offline MiniLM' in capsys.readouterr().err

def test_truncated_model_weights_are_one_message(tiny_folder, tmp_path, capsys):
    import shutil
    d = tmp_path / 'model'; shutil.copytree(tiny_folder, d)
    w = d / 'model.safetensors'; w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(SystemExit) as e: main(['index', '--model', str(d), '--n-train', '20', '--cache-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f'--model {d}: its weights file cannot be read' in err and 'truncated or corrupt' in err, err
    assert 'Traceback' not in err and err.count('\n') == 1
