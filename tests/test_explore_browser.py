"""The explorer in a real browser: `fastif explore --tiny` served by Voila, driven by headless chromium (Playwright).

Every request to a host other than 127.0.0.1/localhost is blocked and counted (must stay zero). Screenshots go to the
test's temporary output folder (printed; `pytest -s` shows it). The tests run in file order on one page."""
import os, re, signal, socket, subprocess, sys, time
from pathlib import Path
import pytest

pytest.importorskip('playwright')
from browser import offline_browser, offline_page, CHROMIUM

if not Path(CHROMIUM).exists(): pytest.skip(f'no chromium at {CHROMIUM} (apt-get install -y chromium)', allow_module_level=True)

SCORE = re.compile(r'[+-]\d\.\d{3}e[+-]\d+')

def _free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _answers(port:int)->bool:
    with socket.socket() as s: return s.connect_ex(('127.0.0.1', port)) == 0

@pytest.fixture(scope='module')
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp('explore_browser')
    print(f'\nscreenshots: {d}')
    return d

@pytest.fixture(scope='module')
def app(out):
    "The running `fastif explore --tiny` (URL, process, port, log)."
    port, log = _free_port(), out / 'server.log'
    cmd = [sys.executable, '-c', 'from fastif_nb.cli import main; main()', 'explore', '--tiny', '--port', str(port),
           '--k', '60', '--depth', '30', '--top', '3', '--scan', '64']
    with open(log, 'w') as f: proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, 'FASTIF_CACHE': str(out)})
    t0 = time.monotonic()
    while f'http://127.0.0.1:{port}/' not in log.read_text():
        assert proc.poll() is None, f'fastif explore exited with {proc.returncode}:\n{log.read_text()}'
        assert time.monotonic() - t0 < 180, f'no URL printed within 180 s:\n{log.read_text()}'
        time.sleep(0.2)
    yield dict(url=f'http://127.0.0.1:{port}/', proc=proc, port=port, log=log)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()

@pytest.fixture(scope='module')
def browser():
    with offline_browser() as b: yield b

@pytest.fixture(scope='module')
def blocked(): return []

@pytest.fixture(scope='module')
def page(app, browser, blocked):
    p = offline_page(browser, blocked)
    p.set_default_timeout(120_000)
    p.goto(app['url'])
    return p

def _text(page, sel:str)->str: return page.locator(sel).inner_text()

def _results(page)->list:
    "The ranked list as shown: one string per training example."
    page.wait_for_selector('.fastif-item')
    return page.locator('.fastif-item').all_inner_texts()

def _run_and_wait(page, button='.fastif-run'):
    "Click a run button; wait until that run is over (the progress line says 'run n: done/failed/cancelled'); return the message."
    m = re.search(r'run (\d+)', _text(page, '.fastif-progress-label'))
    n = int(m.group(1)) + 1 if m else 1
    page.click(button)
    page.wait_for_function("n => /run (\\d+): (done|failed|cancelled)/.exec(document.querySelector('.fastif-progress-label').innerText)?.[1] == String(n)", arg=n)
    page.wait_for_timeout(200)
    return _text(page, '.fastif-message')

def _set(page, sel:str, value:str):
    "Type into a text/number widget and leave it (ipywidgets syncs number boxes on change)."
    page.fill(f'{sel} input', value); page.press(f'{sel} input', 'Tab')

def test_page_loads_with_no_external_requests(page, blocked, out):
    page.wait_for_selector('.fastif-ok')  # "Ready": the model is loaded, the first set selected
    assert 'training examples' in _text(page, '.fastif-title')
    page.screenshot(path=out / '1_ready.png', full_page=True)
    assert 'cdn.jsdelivr.net' not in page.content()  # Voila's FontAwesome links are gone (the fastif template)
    assert blocked == []

def test_pick_an_example_and_run(page, out):
    page.select_option('.fastif-split select', label='HANS (real rows)')
    page.wait_for_function("() => document.querySelector('.fastif-current').innerText.includes('HANS (real rows) #')")
    assert _run_and_wait(page) == ''
    items = _results(page)
    assert len(items) == 6 and all(SCORE.search(t) for t in items), items
    assert 'Negative = helpful' in _text(page, '.fastif-summary-box')
    assert page.locator('.fastif-bars img').count() == 1 and page.locator('.fastif-trace img').count() == 1
    page.screenshot(path=out / '2_result.png', full_page=True)

def test_another_example_changes_the_list(page, out):
    before, origin = _results(page), _text(page, '.fastif-current')
    page.select_option('.fastif-example select', index=1)
    page.wait_for_function("o => document.querySelector('.fastif-current').innerText !== o", arg=origin)
    assert _run_and_wait(page) == ''
    after = _results(page)
    assert len(after) == 6 and after != before
    page.screenshot(path=out / '3_another.png', full_page=True)

def test_free_text(page, out):
    page.fill('.fastif-premise textarea', 'The doctor near the lawyer saw the senator.')
    page.fill('.fastif-hypothesis textarea', 'The lawyer saw the senator.')
    assert _run_and_wait(page, '.fastif-explain-text') == ''
    assert 'free text' in _text(page, '.fastif-current') and 'The lawyer saw the senator.' in _text(page, '.fastif-current')
    assert len(_results(page)) == 6
    page.screenshot(path=out / '4_free_text.png', full_page=True)

def test_bad_inputs_show_a_message_and_the_app_stays_usable(page, out):
    page.fill('.fastif-hypothesis textarea', '')
    page.click('.fastif-explain-text'); page.wait_for_selector('.fastif-error')
    assert 'hypothesis is empty' in _text(page, '.fastif-error')
    page.fill('.fastif-hypothesis textarea', 'word ' * 200)
    page.click('.fastif-explain-text'); page.wait_for_function("() => document.querySelector('.fastif-error')?.innerText.includes('tokens long')")
    _set(page, '.fastif-k', '100000')
    page.click('.fastif-run'); page.wait_for_function("() => document.querySelector('.fastif-error')?.innerText.includes('larger than the training set')")
    page.screenshot(path=out / '5_bad_k.png', full_page=True)
    _set(page, '.fastif-k', '60'); _set(page, '.fastif-scale', '1e-6')
    msg = _run_and_wait(page)
    assert 'LiSSA diverged' in msg and 'Increase `scale`' in msg, msg
    page.screenshot(path=out / '6_diverged.png', full_page=True)
    assert 'Traceback' not in page.content()
    _set(page, '.fastif-scale', 'auto')
    assert _run_and_wait(page) == '' and len(_results(page)) == 6

def test_click_a_training_example_and_explain_it(page, out):
    first = page.locator('button.fastif-train-btn').first
    idx = first.inner_text().strip('#')
    first.click()
    page.wait_for_function("i => document.querySelector('.fastif-train-panel')?.innerText.includes('Training example #' + i)", arg=idx)
    assert page.locator('button.fastif-neighbour-btn').count() == 5
    assert _run_and_wait(page, 'button.fastif-explain-train') == ''
    assert f'training #{idx}' in _text(page, '.fastif-current') and len(_results(page)) == 6
    page.screenshot(path=out / '7_training_example.png', full_page=True)

def test_cancel_a_long_run(page, out):
    _set(page, '.fastif-depth', '1000000')
    page.click('.fastif-run')
    page.wait_for_function("() => document.querySelector('.fastif-progress-label').innerText.includes('LiSSA')")
    page.click('.fastif-cancel')
    page.wait_for_function("() => document.querySelector('.fastif-message').innerText.includes('Cancelled')")
    page.screenshot(path=out / '8_cancelled.png', full_page=True)
    _set(page, '.fastif-depth', '30')
    page.click('.fastif-back')  # back to the previous result: from the cache
    page.wait_for_function("() => document.querySelector('.fastif-summary-box').innerText.includes('from the cache')")
    assert len(_results(page)) == 6

def test_no_request_left_the_machine(blocked):
    assert blocked == [], blocked

def test_ctrl_c_stops_cleanly(app, page):
    page.close()
    app['proc'].send_signal(signal.SIGINT)
    assert app['proc'].wait(60) in (0, 130), app['log'].read_text()
    assert not _answers(app['port'])
