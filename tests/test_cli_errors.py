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
    assert [exit_code(E('x')) for E in (InfluenceInputError, LiSSADivergedError, StaleIndexError, WorkerError, PeerError, FastIFError)] \
        == [2, 2, 3, 4, 4, 1]
    assert list(EXIT_CODES)[-1] is FastIFError  # the base is the fallback
