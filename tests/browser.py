"""Headless Chromium for the tests, offline: every request off this machine is aborted and recorded.

`offline_browser()` yields a Playwright `Browser` (Debian's /usr/bin/chromium, headless); `offline_page(browser,
blocked)` opens a page whose requests to any host but 127.0.0.1/localhost (or file:, data:, blob:) are aborted, their
URLs appended to `blocked`. Both skip the calling test when Playwright or Chromium is not installed.
"""
import os
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

CHROMIUM = '/usr/bin/chromium'
LOCAL_HOSTS = {'127.0.0.1', 'localhost', '::1', '[::1]'}
# the flags a closed network needs: no background connections to Google's services at start-up
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions']

def _is_local(url:str)->bool:
    u = urlsplit(url)
    return u.scheme in ('file', 'data', 'blob', 'about') or (u.hostname or '') in LOCAL_HOSTS

@contextmanager
def offline_browser():
    "A headless Chromium (Playwright `Browser`) from /usr/bin/chromium; skips the test if either is missing."
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.skip('playwright is not installed (pip install playwright; .ci/run installs it)')
    if not os.path.exists(CHROMIUM): pytest.skip(f'{CHROMIUM} not found (apt-get install chromium; .ci/run installs it)')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try: yield browser
        finally: browser.close()

def offline_page(browser, blocked:list):
    "A new page that aborts every request to a host other than 127.0.0.1/localhost/file and appends its URL to `blocked`."
    page = browser.new_page()
    def route(r):
        if _is_local(r.request.url): r.continue_()
        else:
            blocked.append(r.request.url); r.abort()
    page.route('**/*', route)
    return page
