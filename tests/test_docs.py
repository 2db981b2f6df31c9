"""The documentation site: built from the notebooks by `.ci/docs.py`, loaded offline in headless Chromium.

Every page is served on 127.0.0.1 and every request to another host is blocked and counted (there must be none);
all internal links (with their #anchors) are crawled; the API check lists every name in a module's `__all__` that
has no rendered doc entry. Screenshots go to the test's tmp folder.
"""
import ast, functools, http.server, importlib, importlib.util, inspect, json, re, subprocess, sys, threading
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urldefrag, urlsplit

import pytest
from browser import offline_browser, offline_page

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('fastif_docs_build', ROOT / '.ci' / 'docs.py')
docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(docs)  # .ci/docs.py

def _num(p:Path):
    m = re.match(r'^(\d+)', p.stem)
    return int(m.group(1)) if m else None

def test_link_rewriting():
    "Notebook links and nbdev doc links become relative page links; private names lose their (dangling) doc link."
    root = 'https://fastif-nb.github.io/fastif_nb/'
    assert docs.page_name('02a_lissa.ipynb') == 'lissa.html' and docs.page_name('index.ipynb') == 'index.html'
    assert docs.page_name('11a_apps_nli.ipynb') == 'apps_nli.html'
    html = ('<a href="07_fastif.ipynb">a</a><a href="02a_lissa.ipynb#The-recursion">b</a><a href="_docs/index.html">c</a>'
            f'<a href="{root}lissa.html#lissa">d</a><a href="https://github.com/x/y">e</a><h2 id="The-Recursion">r</h2>')
    out = docs._fix_html(html, root)
    for h in ('"fastif.html"', '"lissa.html#the-recursion"', '"index.html"', '"lissa.html#lissa"', '"https://github.com/x/y"',
              'id="the-recursion"'): assert h in out, (h, out)
    md = docs._fix_md(f'see [`_stream`]({root}lissa.html#_stream) and [`LiSSA`]({root}lissa.html#lissa)'
                      '[source](https://github.com/a/b){target="_blank" style="float:right"}', root)
    assert md == f'see `_stream` and [`LiSSA`]({root}lissa.html#lissa)[source](https://github.com/a/b)', md

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Build the site (one command, as a user runs it) and serve it on 127.0.0.1."
    out = tmp_path_factory.mktemp('site')
    if not (docs.ASSETS / 'mathjax' / '.version').exists() or not (docs.ASSETS / 'html-manager' / '.version').exists():
        docs.fetch_assets()  # the install step (.ci/run does it first); a fresh clone's first test run does it here
    r = subprocess.run([sys.executable, str(ROOT / '.ci' / 'docs.py'), '--out', str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    srv, base = _serve(out)
    yield out, base
    srv.shutdown()

@pytest.fixture(scope='module')
def browser():
    with offline_browser() as b: yield b

@pytest.fixture(scope='module')
def shots(tmp_path_factory): return tmp_path_factory.mktemp('screenshots')

def _open(page, url):
    "Go to `url`, wait for MathJax's typesetting to finish; returns the HTTP response."
    resp = page.goto(url, wait_until='load')
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    return resp

def _serve(folder):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_port}/'

def _crawl(page, base:str, also=(), visit=None):
    "Breadth-first over the internal links from index.html and `also`, calling `visit(url, page)` on each page that loads: (pages seen, broken links and pages, image widths)."
    seen, queue, ids, wanted, broken, images = set(), deque([base + 'index.html', *also]), {}, [], [], []
    while queue:
        url = queue.popleft()
        if url in seen: continue
        seen.add(url)
        resp = _open(page, url)
        if resp is None or resp.status != 200: broken.append(f'{url}: HTTP {resp and resp.status}'); continue
        if visit: visit(url, page)
        ids[url] = set(page.eval_on_selector_all('[id]', 'els => els.map(e => e.id)'))
        images += [(url, w) for w in page.eval_on_selector_all('img', 'els => els.map(e => e.naturalWidth)')]
        for href in page.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)'):
            u, frag = urldefrag(href)
            if not u.startswith(base): continue
            if frag: wanted.append((url, u, frag))
            if u not in seen: queue.append(u)
    broken += [f'{src} -> {u}#{frag}: no such anchor' for src, u, frag in wanted if u in ids and frag not in ids[u]]
    return seen, broken, images

@pytest.fixture(scope='module')
def walk(site, browser, shots):
    "One browser walk of the whole site (every notebook's page, then every internal link): what each page showed."
    out, base = site
    blocked, shown = [], {}
    def visit(url, page):
        href = url[len(base):]
        shown[href] = dict(titles=page.locator('h1.fif-title').count(),
                           nav=page.eval_on_selector_all('nav.fif-sidebar li a', 'els => els.map(e => e.getAttribute("href"))'),
                           current=page.locator('nav.fif-sidebar li.fif-current a').get_attribute('href') if href.endswith('.html') else None,
                           pres=page.eval_on_selector_all('.jp-OutputArea-output pre', 'els => els.map(e => e.innerText)'))
        page.screenshot(path=str(shots / (href.replace('/', '_')[:-5] + '.png')))
    pages = [base + docs.page_name(p.name) for p in docs.notebooks()]
    seen, broken, images = _crawl(offline_page(browser, blocked), base, pages, visit)
    return dict(seen=seen, broken=broken, images=images, shown=shown, blocked=blocked)

def test_one_page_per_notebook_in_order(walk):
    nbs = docs.notebooks()
    expected = [docs.page_name(p.name) for p in nbs]
    assert expected[0] == 'index.html' and '07_fastif.ipynb' in [p.name for p in nbs]
    for p, href in zip(nbs, expected):
        assert href in walk['shown'], f'missing page {href} for {p.name}'
        got = walk['shown'][href]
        assert got['titles'] == 1
        assert got['nav'] == expected, f'sidebar of {href} is not in the notebooks order'
        assert got['current'] == href
        streams = [''.join(o['text']) for c in json.loads((docs.PROC / p.name).read_text())['cells']
                   if not re.search(r'#\|\s*(output|include):\s*false', ''.join(c['source']))
                   for o in c.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == 'stdout']
        if streams:  # saved printed output shows as the text it is (not e.g. the repr of its list of lines)
            first = streams[0].strip().splitlines()[0].strip()
            assert any(t.strip().startswith(first) for t in got['pres']), f'{href}: printed output {first!r} not shown'
    assert walk['blocked'] == [], f'requests off the site: {walk["blocked"]}'

def test_crawl_internal_links(walk):
    "Every internal link of every page leads to a page that exists, and to an element with the #anchor it names."
    assert not walk['broken'], 'broken internal links:\n' + '\n'.join(sorted(walk['broken']))
    assert {urlsplit(u).path.lstrip('/') for u in walk['seen']} >= {docs.page_name(p.name) for p in docs.notebooks()}
    images = walk['images']
    assert images and all(w > 0 for _, w in images), f'images that did not load: {[u for u, w in images if not w]}'
    assert walk['blocked'] == [], f'requests off the site: {walk["blocked"]}'

def test_crawl_finds_broken_links(tmp_path, browser):
    "The crawler itself: a missing page and a missing anchor are both reported."
    (tmp_path / 'index.html').write_text('<a href="a.html#here">a</a> <a href="a.html#gone">b</a> <a href="missing.html">c</a>')
    (tmp_path / 'a.html').write_text('<h2 id="here">x</h2>')
    srv, base = _serve(tmp_path)
    try: seen, broken, _ = _crawl(offline_page(browser, []), base)
    finally: srv.shutdown()
    assert sorted(broken) == sorted([f'{base}missing.html: HTTP 404', f'{base}index.html -> {base}a.html#gone: no such anchor'])

def _nav(site, browser, shots, target:Path, name:str):
    out, base = site
    blocked = []
    page = offline_page(browser, blocked)
    _open(page, base + 'index.html')
    href = docs.page_name(target.name)
    with page.expect_navigation(): page.click(f'nav.fif-sidebar a[href="{href}"]')
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    assert page.url == base + href
    import yaml
    fm = yaml.safe_load(''.join(json.loads((docs.PROC / target.name).read_text())['cells'][0]['source']).strip().strip('-'))
    assert page.locator('h1.fif-title').inner_text().strip() == fm['title'].replace('`', '')
    page.screenshot(path=str(shots / f'nav_{name}.png'), full_page=False)
    assert blocked == []

def test_navigate_index_to_fastif(site, browser, shots):
    _nav(site, browser, shots, docs.NBS / '07_fastif.ipynb', 'fastif')

def test_navigate_index_to_application(site, browser, shots):
    apps = [p for p in docs.notebooks() if (_num(p) or 0) >= 11]
    if not apps: pytest.skip('no application notebook (numbered >= 11) in this branch yet: only this step is skipped')
    _nav(site, browser, shots, apps[0], 'application')

def test_saved_widgets_render(site, browser, shots):
    "A notebook's saved ipywidgets state (the explorer of 13a_explore_app) is rendered by the local widget manager."
    out, base = site
    pages = [p for p in sorted(out.glob('*.html')) if 'application/vnd.jupyter.widget-view+json' in p.read_text()]
    assert pages, 'no page carries saved widget state (13a_explore_app saves the explorer)'
    blocked = []
    page = offline_page(browser, blocked)
    _open(page, base + pages[0].name)
    page.wait_for_selector('.jupyter-widgets button', timeout=30_000)
    assert page.locator('.jupyter-widgets button').count() > 0, 'widget state not rendered by the widget manager'
    page.screenshot(path=str(shots / 'widgets.png'))
    assert blocked == []

def test_math_plot_widget_and_lissa_table(site, browser, shots):
    "lissa.html: MathJax output, a plot that loads, and LiSSA's show_doc parameter table."
    from fastcore.docments import docments
    from fastif_nb.lissa import LiSSA
    out, base = site
    blocked = []
    page = offline_page(browser, blocked)
    _open(page, base + 'lissa.html')
    assert page.locator('mjx-container').count() > 0, 'no equation rendered by MathJax'
    assert page.locator('mjx-container[display="true"]').count() > 0
    widths = page.eval_on_selector_all('.jp-OutputArea-output img', 'els => els.map(e => e.naturalWidth)')
    assert widths and min(widths) > 0, 'plot image missing or not loaded'
    h = page.locator('h3#lissa')
    assert h.count() == 1
    block = h.locator('xpath=ancestor::div[contains(@class,"jp-RenderedMarkdown")][1]')
    rows = {r[0]: r for r in block.locator('table tr').evaluate_all(
        'trs => trs.map(tr => [...tr.cells].map(c => c.innerText.trim()))')}
    dm = docments(LiSSA, full=True)
    for p in ('depth', 'batch_size', 'repeats', 'damping'):
        assert p in rows, f'{p} missing from the LiSSA table'
        assert rows[p][1] == dm[p]['anno'].__name__ and rows[p][2] == str(dm[p]['default'])
        assert rows[p][3] == re.sub(r'`([^`]+)`', r'\1', dm[p]['docment']), rows[p]
    assert LiSSA.__doc__.splitlines()[0] in block.inner_text()
    h.scroll_into_view_if_needed(); page.screenshot(path=str(shots / 'lissa_show_doc.png'))
    assert blocked == []

class _Entries(HTMLParser):
    "Ids of headings and the text after each (up to the next heading) of a static page."
    def __init__(self):
        super().__init__(); self.ids, self.text, self.cur, self.code = {}, [], None, []
    def handle_starttag(self, tag, attrs):
        if re.fullmatch(r'h[1-6]', tag): self.cur = dict(attrs).get('id'); self.ids[self.cur] = ''
    def handle_data(self, d):
        if self.cur is not None: self.ids[self.cur] += d
        self.text.append(d)

def _plain(s:str)->str: return re.sub(r'\s+', ' ', re.sub(r'[`*]', '', s)).strip()

def test_every_public_name_has_a_doc_entry(site):
    "Each name in `__all__` of every module: a show_doc entry (heading with its id + one-line docstring) on its page."
    out, base = site
    from fastif_nb._modidx import d as modidx
    missing = []
    for mod_name, syms in sorted(modidx['syms'].items()):
        mod = importlib.import_module(mod_name)
        pages = {v[0].split('#')[0] for v in syms.values()}
        assert len(pages) == 1, f'{mod_name} spans pages {pages}'
        html = (out / pages.pop()).read_text()
        parser = _Entries(); parser.feed(html)
        text = re.sub(r'\s+', ' ', ''.join(parser.text))
        tree = ast.parse(inspect.getsource(mod))
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        for name in getattr(mod, '__all__', []):
            if name.lower() not in parser.ids: missing.append(f'{mod_name}.{name}: no doc entry'); continue
            if name not in defs: continue  # a constant (or an assigned alias): its entry shows the defining line
            doc = (inspect.getdoc(getattr(mod, name)) or '').strip()
            if not doc: missing.append(f'{mod_name}.{name}: no docstring'); continue
            if _plain(doc.splitlines()[0]) not in _plain(text): missing.append(f'{mod_name}.{name}: docstring not shown')
    assert not missing, 'public names without a rendered doc entry:\n' + '\n'.join(missing)
