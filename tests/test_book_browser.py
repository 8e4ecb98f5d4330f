"""The built book (_build/html) as a reader's browser sees it: tabs, math, outputs, offline.

`make test` runs `make book` first. These tests read the existing build and fail, not skip, when
it is missing: a suite that silently skips the book would pass without ever looking at it.

Chromium gets the book from a local HTTP server. Every request to another host is aborted and
recorded, and a test fails if any was made: the book must work offline and must not leak its
readers to third parties.
"""

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHAPTER_02 = ["index", "scoring", "masking", "self_cross_multihead", "taxonomy", "summary"]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Hosts that serve web assets; none may appear in a page or in our own scripts and styles.
CDN_URL = re.compile(
    r"(?:https?:)?//[^\s\"'<>)]*(?:cdn|jsdelivr|unpkg|googleapis|gstatic|cloudflare|"
    r"(?:use|kit)\.fontawesome|mathjax\.org|polyfill\.io|plausible\.io|google-analytics|googletagmanager)",
    re.IGNORECASE,
)
# Elements that make the browser fetch something as soon as the page loads.
EXTERNAL_LOAD = re.compile(
    r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=\"(?:https?:)?//"
    r"|<link\b[^>]*\bhref=\"(?:https?:)?//",
    re.IGNORECASE,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]


def require_build() -> None:
    if not (HTML / "chapters" / "02_principles" / "index.html").is_file():
        pytest.fail(
            f"{HTML.relative_to(ROOT)}/chapters/02_principles/index.html is missing: "
            "run `make book` first (`make test` does)"
        )


# --- static checks of the built files -----------------------------------------------------------


def test_no_built_page_references_a_cdn_or_loads_from_another_host():
    require_build()
    pages = sorted(HTML.rglob("*.html"))
    assert len(pages) >= 8
    offenders = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in [*CDN_URL.finditer(text), *EXTERNAL_LOAD.finditer(text)]:
            offenders.append(f"{page.relative_to(HTML)}: {match.group(0)}")
    assert offenders == []


def test_theme_and_book_scripts_and_styles_reference_no_cdn():
    # MathJax is excluded: its speech-rule engine names a CDN as a default it never uses here
    # (the menu's speech options load the engine from _static/mathjax/sre); the browser tests
    # below would catch any request it made.
    require_build()
    static = HTML / "_static"
    files = [
        path for path in static.rglob("*")
        if path.suffix in {".js", ".css"} and "mathjax" not in path.relative_to(static).parts
    ]
    assert files
    offenders = [
        f"{path.relative_to(HTML)}: {match.group(0)}"
        for path in files
        for match in CDN_URL.finditer(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []


def test_mathjax_is_served_from_the_book():
    require_build()
    page = (HTML / "chapters" / "02_principles" / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r"<script[^>]*\bsrc=\"([^\"]*tex-chtml[^\"]*)\"", page)
    assert sources and all(src.startswith("../../_static/mathjax/") for src in sources), sources
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert list((HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob(
        "*.woff"
    ))


# --- the browser ---------------------------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    failed: list[str]  # set per server, see `server`

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def log_request(self, code="-", size="-"):
        if str(code).isdigit() and int(code) >= 400 and not self.path.startswith("/favicon"):
            self.failed.append(f"{code} {self.path}")


@pytest.fixture(scope="module")
def server():
    require_build()
    failed: list[str] = []
    handler = functools.partial(
        type("Handler", (QuietHandler,), {"failed": failed}), directory=str(HTML)
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", failed
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser_context(server, tmp_path_factory):
    blocked: list[str] = []

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.route("**/*", only_local)
        yield context, blocked
        context.close()


@pytest.fixture
def browse(server, browser_context):
    """Open chapter-02 pages; after the test, no request may have left 127.0.0.1 or failed."""
    base, failed = server
    context, blocked = browser_context
    blocked.clear(), failed.clear()  # each test answers for its own requests
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def goto(name: str):
        page.goto(f"{base}/chapters/02_principles/{name}.html", wait_until="load")
        return page

    yield goto
    page.close()
    assert blocked == [], "requests to other hosts (aborted)"
    assert failed == [], "local requests that failed"
    assert errors == [], "JavaScript errors on the pages"


SELECTED = """() => Array.from(document.querySelectorAll('.framework-tabs')).map(set => {
    const tab = set.querySelector('[role="tab"][aria-selected="true"]');
    const visible = Array.from(set.querySelectorAll('[role="tabpanel"]'))
        .filter(panel => panel.offsetParent !== null).map(panel => panel.dataset.framework);
    return [tab && tab.dataset.framework, visible.join(',')];
})"""


def selected_everywhere(page) -> set:
    """The (selected tab, visible panels) pairs over all tab sets of the page."""
    page.wait_for_selector("html.framework-tabs-ready", state="attached")
    return {tuple(pair) for pair in page.evaluate(SELECTED)}


def page_with_tabs_other_than_index(browse) -> str:
    for name in CHAPTER_02[1:]:
        if browse(name).locator(".framework-tabs").count():
            return name
    pytest.fail("no chapter-02 page besides index has a PyTorch | TensorFlow tab set")


def test_tabs_switch_together_and_the_choice_persists(browse):
    other = page_with_tabs_other_than_index(browse)
    page = browse("index")
    page.evaluate("() => localStorage.clear()")
    page.reload(wait_until="load")
    sets = page.locator(".framework-tabs")
    assert sets.count() >= 2, "chapter 02's first page should have at least two tab sets"
    # With nothing stored, every set opens on its first tab, PyTorch.
    assert selected_everywhere(page) == {("pytorch", "pytorch")}

    sets.nth(1).get_by_role("tab", name="TensorFlow").click()
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}

    page = browse(other)
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}, "choice not carried over"

    page.locator(".framework-tabs").first.get_by_role("tab", name="PyTorch").click()
    assert selected_everywhere(page) == {("pytorch", "pytorch")}
    page.reload(wait_until="load")
    assert selected_everywhere(page) == {("pytorch", "pytorch")}, "choice lost on reload"


def test_tabs_work_from_the_keyboard(browse):
    page = browse("index")
    first = page.locator(".framework-tabs").first
    first.get_by_role("tab", name="PyTorch").click()
    page.keyboard.press("ArrowRight")
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}
    focused = page.evaluate("() => document.activeElement.dataset.framework")
    assert focused == "tensorflow"
    page.keyboard.press("Home")
    assert selected_everywhere(page) == {("pytorch", "pytorch")}


TEXT_OUTSIDE_CODE_AND_MATH = """() => {
    const main = (document.querySelector('main') || document.body).cloneNode(true);
    main.querySelectorAll('pre, code, script, style, mjx-container, .cell_output')
        .forEach(node => node.remove());
    return main.textContent;
}"""
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$\\[A-Za-z]")


@pytest.mark.parametrize("name", CHAPTER_02)
def test_math_is_typeset(browse, name):
    page = browse(name)
    has_math = page.locator(".math").count() > 0
    if has_math:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        )
        page.evaluate("() => MathJax.startup.promise")
        assert page.locator("mjx-container").count() >= page.locator(".math").count()
    leftover = RAW_TEX.findall(page.evaluate(TEXT_OUTSIDE_CODE_AND_MATH))
    assert leftover == [], f"untypeset TeX delimiters on {name}"
    if name == "index":
        assert has_math, "chapter 02's first page is expected to have math"


ERROR_OUTPUTS = ".cell_output .traceback, .cell_output .error, .output.traceback, .output.error"


@pytest.mark.parametrize("name", CHAPTER_02)
def test_no_cell_output_is_a_traceback(browse, name):
    page = browse(name)
    assert page.locator(ERROR_OUTPUTS).count() == 0
    outputs = page.locator(".cell_output").all_text_contents()
    assert not [text for text in outputs if "Traceback" in text]
