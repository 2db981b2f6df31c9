"""Write README.md from nbs/index.ipynb (quarto, which nbdev_readme needs, cannot be installed here).

Markdown cells are copied; code cells become ```python blocks (nbdev `#|` directive lines dropped, `#| hide` cells
skipped) followed by their saved text outputs. Run: python .ci/readme.py [--check]
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
def out_text(o):
    if o.get('output_type') == 'stream': return ''.join(o['text'])
    d = o.get('data', {})
    return ''.join(d['text/markdown']) if 'text/markdown' in d else ''.join(d.get('text/plain', ''))

def render(nb):
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': parts.append(src); continue
        lines = src.splitlines()
        if any(l.strip().replace(' ', '') in ('#|hide', '#|include:false') for l in lines): continue
        code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        if code: parts.append(f'```python\n{code}\n```')
        outs = ''.join(out_text(o) for o in c.get('outputs', [])).rstrip()
        if outs: parts.append(f'```\n{outs}\n```')
    return '\n\n'.join(parts).rstrip() + '\n'

if __name__ == '__main__':
    text = render(json.loads((root / 'nbs' / 'index.ipynb').read_text()))
    readme = root / 'README.md'
    if '--check' in sys.argv:
        if readme.read_text() != text: sys.exit('README.md is out of date with nbs/index.ipynb: run python .ci/readme.py')
        print('README in sync with nbs/index.ipynb')
    else: readme.write_text(text)
