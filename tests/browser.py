"""Headless Debian chromium for browser tests, with every request to a non-loopback host blocked and recorded.

`offline_browser()` yields a Playwright `Browser`; `offline_page(browser, blocked)` opens a page whose requests to any
host other than 127.0.0.1/localhost are aborted and their URLs appended to `blocked` (tests assert it stays empty)."""
import contextlib, os
from urllib.parse import urlsplit

CHROMIUM = os.environ.get('FASTIF_CHROMIUM', '/usr/bin/chromium')
LOOPBACK = {'127.0.0.1', 'localhost', '::1', '[::1]'}

@contextlib.contextmanager
def offline_browser():
    "A headless chromium `Browser` (Playwright), closed on exit."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=['--no-sandbox', '--disable-dev-shm-usage'])
        try: yield browser
        finally: browser.close()

def offline_page(browser, blocked:list):
    "A new page that aborts every request to a non-loopback host, appending its URL to `blocked`."
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    def route(r):
        url = r.request.url
        host = urlsplit(url).hostname
        if url.startswith(('data:', 'blob:', 'about:')) or host in LOOPBACK: return r.continue_()
        blocked.append(url); return r.abort()
    page.route('**/*', route)
    return page
