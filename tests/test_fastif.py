"""End-to-end FastIF on a tiny random BERT: parallel explain (persistent pool) equals serial, the pool is reused, replaced
when stale or broken, and closed; CLI --workers."""
import json, multiprocessing, os, signal, subprocess, sys
import pytest, torch
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF
from fastif_nb.lissa import LiSSA

def close(a, b):
    "Two explanations have the same candidates' scores, to float tolerance."
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5 * b.scores.abs().max().item())

def test_parallel_explain_equals_serial_on_one_persistent_pool(tiny):
    "explain(workers=2) twice (different test points) == serial twice (scores and error bars), on the same 2 processes; Full too."
    model, tok = tiny
    fif = FastIF(model, tok, load_mnli('train').subset(range(120)), n_frozen_layers=2, progress=False,
                 solver=LiSSA(depth=30, batch_size=2, repeats=3, damping=0.1, scale=10., seed=5))
    dev = load_mnli('dev_matched').subset(range(3))
    try:
        pts = [dev.subset([0, 1]), dev.subset([2])]
        serial = [fif.explain(d, k=25) for d in pts]
        par = [fif.explain(pts[0], k=25, workers=2)]
        pool = fif.pool(2); pids = pool.pids
        par.append(fif.explain(pts[1], k=25, workers=2))
        for s, p in zip(serial, par):
            assert torch.equal(s.indices, p.indices); close(p, s)
            assert (s.stderr > 0).all()  # T = 3 repetitions split 2 + 1 over the ranks: the same error bars and stability
            torch.testing.assert_close(p.stderr, s.stderr, rtol=1e-5, atol=1e-9); torch.testing.assert_close(p.stability, s.stability)
        assert fif.pool(2) is pool and pool.pids == pids and pool.jobs == 2 and pool.alive
        close(fif.explain(dev, k=None, workers=2), fif.explain(dev, k=None))
        assert fif.pool(2) is pool and pool.jobs == 3
    finally: fif.close()
    assert not pool.alive and multiprocessing.active_children() == []

def test_pool_is_replaced_when_stale_or_broken(tiny):
    "Weights changed in place -> a new pool with the new weights; a killed worker -> a warning and a new pool; `with fif.pool(W)`."
    model, tok = tiny
    fif = FastIF(model, tok, load_mnli('train').subset(range(60)), n_frozen_layers=2, progress=False,
                 solver=LiSSA(depth=20, batch_size=2, repeats=2, damping=0.1, scale=10., seed=1))
    dev = load_mnli('dev_matched').subset([4])
    shift = torch.tensor([1., -1., 0.])  # not the same for all classes, which softmax would ignore
    try:
        before = fif.explain(dev, k=10, workers=2); first = fif.pool(2)
        with torch.no_grad(): model.classifier.bias.add_(shift)
        try:
            after = fif.explain(dev, k=10, workers=2)   # the weights changed: a new pool, not the stale one
            close(after, fif.explain(dev, k=10))
            assert (after.scores - before.scores).abs().max() > 1e-3 * before.scores.abs().max()
            pool = fif.pool(2)
            assert pool is not first and not first.alive and pool.jobs == 1
            os.kill(pool.pids[1], signal.SIGKILL); pool._procs[1].join(10)
            with pytest.warns(UserWarning, match=r"worker pool broke .*starting a new one"):
                with fif.pool(2, timeout=600) as again:   # a new pool, closed when the block ends
                    close(fif.explain(dev, k=10, workers=2), after)
                    assert fif.pool(2) is again and again.timeout == 600 and again.jobs == 1
            assert not again.alive and not pool.alive
        finally:
            with torch.no_grad(): model.classifier.bias.sub_(shift)
    finally: fif.close()
    assert multiprocessing.active_children() == []

def test_cli_workers(tiny, tmp_path, capsys, monkeypatch):
    "The CLI with --workers 2 (a real process, as users run it) gives the serial run's examples and scores; --workers 0 is refused."
    from fastif_nb.cli import main
    model, tok = tiny
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    args = ['explain', '--model', str(tmp_path), '--num-labels', '3', '--n-train', '60', '--n-frozen-layers', '2', '--k', '10',
            '--solver', 'lissa', '--depth', '10', '--repeats', '2', '--split', 'dev_matched', '--indices', '0,1', '--json', '--threads', '1']
    monkeypatch.setenv('FASTIF_CACHE', str(tmp_path))
    main(args); one = json.loads(capsys.readouterr().out)          # serial: in this process
    env = {**os.environ, 'FASTIF_CACHE': str(tmp_path)}
    two = json.loads(subprocess.run([sys.executable, '-m', 'fastif_nb.cli', *args, '--workers', '2'], capture_output=True, text=True,
                                    env=env, check=True).stdout)
    ids = lambda res: [[e['train_index'] for e in d['helpful'] + d['harmful']] for d in res]  # helpful = negative only: may be empty
    assert ids(one) == ids(two)
    for a, b in zip(one, two):
        for x, y in zip(a['helpful'] + a['harmful'], b['helpful'] + b['harmful']): assert x['influence'] == pytest.approx(y['influence'], rel=1e-3)
    with pytest.raises(SystemExit) as e: main(args + ['--workers', '0'])
    assert e.value.code == 2 and '--workers must be >= 1' in capsys.readouterr().err

def test_explain_refuses_a_changed_prefix():
    "Frozen-prefix weights changed after FastIF cached the training states -> a clear error, not silently stale scores."
    from fastif_nb.errors import StaleIndexError
    from fastif_nb.testing import tiny_bert, offline_tokenizer
    model = tiny_bert(seed=3)
    fif = FastIF(model, offline_tokenizer(), load_mnli('train').subset(range(40)), n_frozen_layers=2, progress=False,
                 solver=LiSSA(depth=10, batch_size=2, damping=0.1, scale=10., seed=0))
    dev = load_mnli('dev_matched').subset([0])
    fif.explain(dev, k=10)
    with torch.no_grad(): model.bert.encoder.layer[0].output.dense.bias.add_(0.1)
    with pytest.raises(StaleIndexError, match='Rebuild the FastIF'): fif.explain(dev, k=10)

def test_cli_select_head(tiny, tmp_path, capsys, monkeypatch):
    "--select head scores the head selector's top k (the library's `build_selector('head')` candidates), not the kNN's."
    from fastif_nb.cli import main, parser, pipeline
    model, tok = tiny
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    args = ['explain', '--model', str(tmp_path), '--num-labels', '3', '--n-train', '60', '--n-frozen-layers', '2', '--k', '10', '--top', '10',
            '--solver', 'lissa', '--depth', '10', '--damping', '0.1', '--split', 'dev_matched', '--indices', '0', '--json', '--threads', '1']
    monkeypatch.setenv('FASTIF_CACHE', str(tmp_path))
    main(args + ['--select', 'head']); res = json.loads(capsys.readouterr().out)[0]
    fif = pipeline(parser().parse_args(args))
    dev0 = load_mnli('dev_matched').subset([0])
    want = fif.build_selector('head').search(fif._prepare(dev0)[-1], 10, fif.task)[0].tolist()
    knn = fif.explain(dev0, k=10).indices[0].tolist()
    got = [e['train_index'] for e in res['helpful'] + res['harmful']]
    assert set(got) <= set(want) and len(got) == 10 and set(want) != set(knn)
