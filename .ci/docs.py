"""Build the documentation site offline: nbdev-processed notebooks -> static HTML in `_docs/` (nbconvert lab template).

    python .ci/docs.py --fetch-assets   # once (install step): MathJax and the widget manager from npm
    python .ci/docs.py                  # build _docs/ (then open _docs/index.html, or serve it with http.server)

Users with quarto get the same site from `nbdev_docs` (nbs/_quarto.yml, nbs/sidebar.yml). Here quarto cannot be
installed, so: (1) nbdev's own notebook processors write `_proc/` (show_doc cells for every exported name, backtick
links, frontmatter), with nbdev's `exec_show_docs` replaced by a stricter one that runs only exported cells, import-only
cells and show_doc cells (nbdev also runs any cell mixing imports and code -- `#| slow` studies included); the
parameters of each show_doc entry are added as a table (fastcore's `DocmentTbl`: type, default, docment). (2) nbconvert's
lab template renders each processed notebook with a navigation sidebar in the notebooks' order; links between
notebooks (`x.ipynb`, nbdev's doc links) become relative page links; MathJax 3 and the ipywidgets HTML manager are
copied into `_docs/assets/`, so a page makes no request off the site folder.
"""
import argparse, ast, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, PROC, OUT = ROOT / 'nbs', ROOT / '_proc', ROOT / '_docs'
ASSETS = ROOT / '.cache' / 'docs_assets'
NPM = {'mathjax': '3.2.2', '@jupyter-widgets/html-manager': '1.0.15'}  # pinned; unpacked under ASSETS/<name>/

def page_name(nb_name:str)->str:
    "nbdev's (and quarto's) page of a notebook: number prefix dropped, lower case (`02a_lissa.ipynb` -> `lissa.html`)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb_name).name.lower()).rsplit('.', 1)[0] + '.html'

def notebooks(path:Path=NBS)->list:
    "Notebooks of the site in nbdev's sidebar order (index first, then by name: 00, 01, 02, 02a, 02b, ...)."
    nbs = sorted([p for p in path.glob('*.ipynb') if not p.name.startswith(('_', '.'))],
                 key=lambda p: (p.stem != 'index', p.name.lower()))
    pages = {}
    for p in nbs: pages.setdefault(page_name(p.name), []).append(p.name)
    clash = {k: v for k, v in pages.items() if len(v) > 1}
    if clash: sys.exit(f'notebooks that would share a page (nbdev drops the number prefix): {clash}; rename one')
    return nbs

# ---------------------------------------------------------------- assets (install step: npm, never at build time)
def fetch_assets():
    "Download the pinned npm tarballs (`npm pack`, no dependencies needed: both ship prebuilt bundles) into .cache/."
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, ver in NPM.items():
        dest = ASSETS / name.split('/')[-1]
        if (dest / '.version').exists() and (dest / '.version').read_text() == ver: continue
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(['npm', 'pack', '--silent', f'{name}@{ver}', '--pack-destination', d], check=True,
                           stdout=subprocess.DEVNULL)
            tgz, = Path(d).glob('*.tgz')
            shutil.rmtree(dest, ignore_errors=True)
            with tarfile.open(tgz) as t: t.extractall(d, filter='data')
            shutil.move(str(Path(d) / 'package'), dest)
        (dest / '.version').write_text(ver)
    print(f'docs assets in {ASSETS.relative_to(ROOT)}: ' + ', '.join(f'{k}@{v}' for k, v in NPM.items()))

def copy_assets(out:Path):
    "MathJax 3 (es5 build without the speech engine) and the widget manager's standalone `embed.js` with its fonts."
    mj, hm = ASSETS / 'mathjax', ASSETS / 'html-manager'
    if not (mj / 'es5' / 'tex-chtml.js').exists() or not (hm / 'dist' / 'embed.js').exists():
        sys.exit('docs assets missing: run `python .ci/docs.py --fetch-assets` once (needs npm), then build again')
    a = out / 'assets'
    if not (a / 'mathjax' / 'tex-chtml.js').exists():
        shutil.copytree(mj / 'es5', a / 'mathjax', ignore=shutil.ignore_patterns('sre', '*-speech.js', 'node-main.js'))
    w = a / 'widgets'; w.mkdir(parents=True, exist_ok=True)
    for f in (hm / 'dist').iterdir():
        if f.name == 'embed.js' or f.suffix in ('.woff', '.woff2', '.ttf', '.eot', '.svg'): shutil.copy2(f, w / f.name)
    shutil.copy2(NBS / 'styles.css', a / 'styles.css')
    from jupyter_core.paths import jupyter_path  # JupyterLab's CSS, once for the site instead of inlined in each page
    lab = next(Path(d) / 'lab' / 'static' for d in jupyter_path('nbconvert', 'templates') if (Path(d) / 'lab' / 'static').exists())
    (a / 'jupyterlab.css').write_text((lab / 'index.css').read_text() + '\n' + (lab / 'theme-light.css').read_text())

# ---------------------------------------------------------------- step 1: nbdev processing into _proc/
def _proc_one(args):
    "Process one notebook with nbdev's processors (in a worker process; imports stay cached between notebooks)."
    src, dst = map(Path, args)
    os.environ['IN_TEST'] = '1'
    from execnb.nbio import read_nb, write_nb
    from nbdev import processors as P
    class exec_show_docs_strict(P.exec_show_docs):
        "nbdev's exec_show_docs, but only exported, import-only and show_doc cells run; show_doc gets a parameter table."
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k') or not _strict_eval(cell): return
            self.k.cell(cell)
            if self.k.exc: raise Exception(f'Error in {src.name}, cell {cell.idx_}:\n{cell.source}') from self.k.exc
            arg = _show_doc_arg(cell.source)
            if arg and cell.outputs:
                self.k.run_cell(f'from fastcore.docments import DocmentTbl as _DT\n_fif_tbl = _DT({arg})._repr_markdown_()')
                tbl = self.k.user_ns.pop('_fif_tbl', '') if not self.k.exc else ''
                for o in cell.outputs:
                    md = o.get('data', {}).get('text/markdown')
                    if md is not None and tbl:
                        o['data']['text/markdown'] = (''.join(md) if isinstance(md, list) else md) + '\n\n' + tbl + '\n'
    class Filter(P.FilterDefaults):
        def base_procs(self): return [exec_show_docs_strict if p is P.exec_show_docs else p for p in super().base_procs()]
    nb = read_nb(src)
    _constant_entries(nb)
    Filter()(nb)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return src.name

def _constant_entries(nb):
    "A doc entry (heading + defining line) after each exported cell for its public module-level assignments."
    from execnb.nbio import mk_cell
    cells = []
    for c in nb.cells:
        cells.append(c)
        src = c.source if c.cell_type == 'code' else ''
        if not re.search(r'^#\|\s*exports?\s*$', src, flags=re.M): continue
        try: tree = ast.parse(src)
        except SyntaxError: continue
        lines, md = src.splitlines(), []
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and not t.id.startswith('_'):
                    code = '\n'.join(lines[node.lineno - 1:node.end_lineno])
                    md.append(f'---\n\n### {t.id}\n\n```python\n{code}\n```\n')
        if md:
            cells.append(mk_cell('\n'.join(md), 'markdown'))
            cells[-1]['id'] = f'{abs(hash(cells[-1].source)) % 16**8:08x}'
    nb.cells = cells

def _strict_eval(cell)->bool:
    if cell.cell_type != 'code' or not cell.source: return False
    d = cell.directives_
    if 'slow' in d or 'nbdev_export()' in cell.source or (d.get('eval:') or [''])[0].lower() == 'false': return False
    if d.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: return True
    try: body = ast.parse(cell.source).body
    except SyntaxError: return False
    return bool(body) and (all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body) or _show_doc_arg(cell.source) is not None)

def _show_doc_arg(src:str):
    "Source of the symbol in a cell that is just `show_doc(sym, ...)`, else None."
    try: body = ast.parse(src).body
    except SyntaxError: return None
    if len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Call):
        c = body[0].value
        if getattr(c.func, 'id', None) == 'show_doc' and c.args: return ast.unparse(c.args[0])
    return None

def process(nbs:list, workers:int=2, force:bool=False)->list:
    "nbdev processing of the notebooks that changed since their `_proc` copy (or all with `force`)."
    newest = max(Path(__file__).stat().st_mtime, (ROOT / 'settings.ini').stat().st_mtime)
    todo = [(str(p), str(PROC / p.name)) for p in nbs if force or not (PROC / p.name).exists()
            or (PROC / p.name).stat().st_mtime < max(p.stat().st_mtime, newest)]
    if todo:  # shards of notebooks, one process each (IPython's shell replaces __main__, so no process pool)
        env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
        shards = [todo[i::workers] for i in range(min(workers, len(todo)))]
        ps = [subprocess.Popen([sys.executable, __file__, '--proc', *[x for pair in sh for x in pair]], env=env, cwd=ROOT)
              for sh in shards]
        if any(p.wait() for p in ps): sys.exit('nbdev processing failed (see above)')
    return [PROC / p.name for p in nbs]

# ---------------------------------------------------------------- step 2: render with nbconvert's lab template
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock -%}
{%- block jupyter_widgets -%}
{%- if "widgets" in nb.metadata -%}<script src="assets/widgets/embed.js" defer></script>{%- endif -%}
{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {tex: {inlineMath: [['$','$'], ['\\(','\\)']], displayMath: [['$$','$$'], ['\\[','\\]']],
  processEscapes: true, processEnvironments: true}, options: {ignoreHtmlClass: 'jp-CodeCell|tex2jax_ignore'},
  chtml: {fontURL: 'assets/mathjax/output/chtml/fonts/woff-v2'}};</script>
<script id="MathJax-script" src="assets/mathjax/tex-chtml.js" defer></script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
{%- block notebook_css -%}<link rel="stylesheet" href="assets/jupyterlab.css">{%- endblock notebook_css -%}
{%- block html_head_css -%}<link rel="stylesheet" href="assets/styles.css">{%- endblock -%}
{%- block body_header -%}
<body class="jp-Notebook fif-page" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<nav class="fif-sidebar" aria-label="notebooks">
<a class="fif-home" href="index.html">{{ resources.site.title }}</a>
<ol>
{%- for p in resources.site.pages %}
<li{% if p.href == resources.site.current %} class="fif-current"{% endif %}><a href="{{ p.href }}" title="{{ p.title | e }}"><span class="fif-nb">{{ p.stem }}</span> {{ p.title_html }}</a></li>
{%- endfor %}
</ol>
</nav>
<main class="fif-main">
<header class="fif-header"><h1 class="fif-title">{{ resources.site.page_title }}</h1>
{%- if resources.site.description %}<p class="fif-description">{{ resources.site.description }}</p>{% endif %}</header>
{%- endblock body_header -%}
"""

_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$')
def _prepare(nb:dict, doc_root:str='')->dict:
    "Quarto conventions -> plain notebook: frontmatter out, `#|` cell options applied, links made relative."
    from nbconvert.filters import markdown2html
    fm, cells = {}, []
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'):
            import yaml
            fm.update(yaml.safe_load(src.strip().strip('-')) or {}); continue
        if c['cell_type'] == 'code':
            lines, opts = src.splitlines(), {}
            while lines and _DIRECTIVE.match(lines[0]):
                k, v = _DIRECTIVE.match(lines.pop(0)).groups(); opts[k] = v.strip().lower()
            if opts.get('include') == 'false': continue
            if opts.get('output') == 'false': c['outputs'] = []
            c['source'] = '\n'.join(lines)
            if opts.get('echo') == 'false' or not c['source'].strip():
                c.setdefault('metadata', {}).setdefault('tags', []).append('fif-no-input')
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is not None: o['data']['text/markdown'] = _fix_md(''.join(md) if isinstance(md, list) else md, doc_root)
        elif c['cell_type'] == 'markdown': c['source'] = _fix_md(src, doc_root)
        cells.append(c)
    nb['cells'] = cells
    nb.setdefault('metadata', {})['fif_frontmatter'] = fm
    import nbformat
    return nbformat.from_dict(nb)

def _fix_md(md:str, doc_root:str='')->str:
    "Pandoc link attributes dropped (`[source](url){target=...}`), doc links inside signature code blocks unlinked."
    md = re.sub(r'(\]\([^)\s]+\))\{[^}\n]*\}', r'\1', md)
    # nbdev links every backticked name of _modidx, private ones too, but only public names get a show_doc entry:
    # a link to `_name` (or `Cls._name`) would point at an anchor that quarto's site lacks as well -> plain code
    if doc_root: md = re.sub(r'\[(`(?:[\w.]*\.)?_(?!_)\w*`)\]\(' + re.escape(doc_root) + r'[^)\s]*\)', r'\1', md)
    def unlink(m): return re.sub(r'\[`?([^\]`]+)`?\]\([^)\s]+\)', r'\1', m.group(0))
    return re.sub(r'```python\n.*?```', unlink, md, flags=re.S)

def _fix_html(html:str, doc_root:str)->str:
    "Relative links: `x.ipynb` and nbdev doc links to pages, `_docs/` prefix dropped; heading ids as quarto makes them."
    def href(m):
        u = m.group(2)
        if doc_root and u.startswith(doc_root): u = u[len(doc_root):].lstrip('/') or 'index.html'
        elif u.startswith('_docs/'): u = u[len('_docs/'):]
        if not re.match(r'^[a-z]+:|^#|^/', u):
            path, _, frag = u.partition('#')
            if path.endswith('.ipynb'): u = page_name(path) + ('#' + frag.lower() if frag else '')  # ids are lower case
        return f'{m.group(1)}"{u}"'
    html = re.sub(r'(href=)"([^"]*)"', href, html)
    # nbconvert keeps heading case (`id="LiSSA"`); quarto and nbdev's doc links use lower case (`lissa.html#lissa`)
    html = re.sub(r'(<h[1-6] id=")([^"]+)(")', lambda m: m.group(1) + m.group(2).lower() + m.group(3), html)
    return re.sub(r'(<a class="anchor-link" href="#)([^"]+)(")', lambda m: m.group(1) + m.group(2).lower() + m.group(3), html)

def render(procs:list, out:Path=OUT)->list:
    "Write one page per processed notebook into `out`; returns the pages."
    import nbformat, jinja2
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    cfg = _settings()
    doc_root = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/'
    nbs = [(p, _prepare(nbformat.reads(p.read_text(), as_version=4), doc_root)) for p in procs]  # reads joins lines
    pages = [dict(href=page_name(p.name), stem=p.stem.split('_')[0] if p.stem != 'index' else '',
                  title=nb['metadata']['fif_frontmatter'].get('title', p.stem)) for p, nb in nbs]
    for pg in pages: pg['title_html'] = _inline(pg['title'])
    ex = HTMLExporter(template_name='lab', template_file='fif.html.j2', anchor_link_text='¶',
                      extra_loaders=[jinja2.DictLoader({'fif.html.j2': TEMPLATE})])
    tr = TagRemovePreprocessor(remove_input_tags={'fif-no-input'}, enabled=True)
    ex.register_preprocessor(tr, enabled=True)
    out.mkdir(parents=True, exist_ok=True)
    for (p, nb), page in zip(nbs, pages):
        fm = nb['metadata']['fif_frontmatter']
        from nbconvert.filters import markdown2html
        desc = markdown2html(fm.get('description', '')).strip() if fm.get('description') else ''
        desc = re.sub(r'^<p>(.*)</p>$', r'\1', desc, flags=re.S)
        res = {'site': dict(title=cfg.get('title', 'docs'), pages=pages, current=page['href'],
                            page_title=_inline(fm.get('title', p.stem)), description=desc),
               'metadata': {'name': fm.get('title', p.stem)}}
        body, _ = ex.from_notebook_node(nb, resources=res)
        (out / page['href']).write_text(_fix_html(body, doc_root))
    files = [out / pg['href'] for pg in pages]
    link_local_files(files, out)
    resolve_method_anchors(files)
    return files

def link_local_files(files:list, out:Path):
    "Copy the repository files that pages link to by a repo-relative path (README-style, e.g. benchmarks/results/x.png)."
    for f in files:
        for u in re.findall(r'(?:src|href)="([^"#:]+)"', f.read_text()):
            src, dst = ROOT / u, out / u
            if not dst.exists() and src.is_file() and not u.startswith(('/', '.')): dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dst)

def resolve_method_anchors(files:list):
    "Point `Cls.method` doc links at `Cls` where the method has no entry of its own (methods defined in the class body)."
    ids = {f.name: set(re.findall(r'\bid="([^"]+)"', f.read_text())) for f in files}
    def fix(m, page):
        path, sep, frag = m.group(2).partition('#')
        known = ids.get(path or page)
        if not sep or known is None or frag in known or re.match(r'^[a-z]+:', path): return m.group(0)
        while '.' in frag and frag not in known: frag = frag.rsplit('.', 1)[0]
        return f'{m.group(1)}"{path}#{frag}"' if frag in known else m.group(0)
    for f in files:
        html = f.read_text(); new = re.sub(r'(href=)"([^"]*)"', lambda m: fix(m, f.name), html)
        if new != html: f.write_text(new)

def _inline(s:str)->str:
    "Escaped text with `code` spans (titles of pages)."
    import html
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(str(s)))

def _settings()->dict:
    import configparser
    c = configparser.ConfigParser(); c.read(ROOT / 'settings.ini')
    return dict(c['DEFAULT'])

def sidebar():
    "Regenerate nbs/sidebar.yml from the notebooks present (what `nbdev_docs` does with custom_sidebar = False)."
    try:
        from nbdev.quarto import nbdev_sidebar
        cwd = os.getcwd(); os.chdir(ROOT)
        try: nbdev_sidebar.__wrapped__(path=str(NBS))
        finally: os.chdir(cwd)
    except Exception as e: print('sidebar.yml not regenerated:', e)

def build(out:Path=OUT, workers:int=2, force:bool=False)->list:
    t0 = time.time()
    nbs = notebooks()
    sidebar()
    procs = process(nbs, workers=workers, force=force)
    t1 = time.time()
    if force: shutil.rmtree(out / 'assets', ignore_errors=True)
    copy_assets(out)
    pages = render(procs, out)
    for old in set(out.glob('*.html')) - set(pages): old.unlink()  # pages of notebooks that no longer exist
    print(f'built {len(pages)} pages in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} '
          f'(nbdev processing {t1 - t0:.1f} s, rendering {time.time() - t1:.1f} s)')
    return pages

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--fetch-assets', action='store_true', help='download MathJax and the widget manager (npm) and exit')
    ap.add_argument('--out', default=str(OUT), help='site folder (default: _docs)')
    ap.add_argument('--workers', type=int, default=2, help='processes for the nbdev processing step')
    ap.add_argument('--proc', nargs='+', help=argparse.SUPPRESS)  # internal: process these src dst pairs
    ap.add_argument('--force', action='store_true', help='reprocess every notebook (ignore the _proc cache)')
    a = ap.parse_args()
    if a.proc:
        for i in range(0, len(a.proc), 2): print('  processed', _proc_one(a.proc[i:i + 2]), flush=True)
    elif a.fetch_assets: fetch_assets()
    else: build(Path(a.out).resolve(), a.workers, a.force)
