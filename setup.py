"""Install fastif_nb from `settings.ini` (nbdev's single source of package metadata).

Written for current setuptools: no `pkg_resources`. Extras:
  dev  -- nbdev, pytest and what the notebooks need to run as tests;
  gpu  -- faiss-gpu instead of faiss-cpu: `FASTIF_FAISS=gpu pip install "fastif_nb[gpu]"`.
"""
import os
from configparser import ConfigParser
from setuptools import find_packages, setup

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

reqs = cfg.get('requirements', '').split()
gpu_reqs = ['faiss-gpu-cu12>=1.8']
# faiss-cpu and faiss-gpu both install the `faiss` module, so the GPU build replaces the CPU one
if os.environ.get('FASTIF_FAISS', 'cpu').lower() == 'gpu': reqs = [r for r in reqs if not r.startswith('faiss-cpu')]

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
min_python = cfg['min_python']
py_versions = ['3.10', '3.11', '3.12', '3.13']

setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic[0],
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + ([f'License :: {lic[1]}'] if lic[1] else [])
                + [f'Programming Language :: Python :: {v}' for v in py_versions[py_versions.index(min_python):]],
    packages=find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']),
    include_package_data=True,
    package_data={cfg['lib_path']: ['data/*', 'data/**/*', 'assets/*', 'assets/**/*']},  # assets: the explorer's Voila notebook and template
    python_requires='>=' + min_python,
    install_requires=reqs,
    extras_require={'dev': cfg.get('dev_requirements', '').split(), 'gpu': gpu_reqs},
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
