"""The built book (_build/html) as a reader's browser sees it: tabs, math, outputs, offline.

Every page listed in _toc.yml is opened on a first visit (empty localStorage): no console error, no
failed request, no broken image, and the diagrams its source embeds are shown.

`make test` runs `make book` first. These tests read the existing build and fail, not skip, when
it is missing: a suite that silently skips the book would pass without ever looking at it.

Chromium gets the book from a local HTTP server. Every request to another host is aborted and
recorded, and a test fails if any was made: the book must work offline and must not leak its
readers to third parties.
"""

import functools
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import sync_playwright
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
# The book's pages in reading order, as Jupyter Book itself reads the toc (docnames, no suffix).
PAGES = list(parse_toc_yaml(str(ROOT / "_toc.yml")).keys())
FIGURES = sorted(ROOT.glob("chapters/*/figures/*.svg"))
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
    missing = [page for page in PAGES if not (HTML / f"{page}.html").is_file()]
    if missing:
        pytest.fail(f"{HTML.relative_to(ROOT)} lacks {missing}: run `make book` first (`make test` does)")


def source_of(page: str) -> Path:
    [path] = [path for path in ROOT.glob(f"{page}.*") if path.suffix in {".md", ".ipynb"}]
    return path


def figures_referenced(page: str) -> list[Path]:
    """The committed figures (chapters/*/figures/*.svg) that the page's source names."""
    source = source_of(page)
    text = source.read_text(encoding="utf-8")
    return [figure for figure in FIGURES
            if re.search(rf"(?<![\w/.-]){re.escape(relpath(figure, source.parent))}\b", text)]


def relpath(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


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
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def browse(server, browser):
    """Open pages (docnames) in a fresh browser context: empty localStorage, as on a reader's first
    visit. After the test: no request may have left 127.0.0.1 or failed, no console error."""
    base, failed = server
    failed.clear()  # each test answers for its own requests
    blocked: list[str] = []
    errors: list[str] = []

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def request_failed(request):
        if urlparse(request.url).hostname == "127.0.0.1":
            errors.append(f"request failed: {request.url} ({request.failure})")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", lambda message: message.type == "error" and errors.append(
        f"console.error: {message.text} ({message.location.get('url')})"))
    page.on("requestfailed", request_failed)

    def goto(name: str):
        page.goto(f"{base}/{name}.html", wait_until="load")
        return page

    yield goto
    context.close()
    assert blocked == [], "requests to other hosts (aborted)"
    assert failed == [], "local requests that failed"
    assert errors == [], "errors in the browser"


# Framework tab sets are sphinx-design tab sets (book/framework_tabs.py): per set, radio inputs,
# labels carrying the framework as data-sync-id, and content panels the labels point to.
SELECTED = """() => Array.from(document.querySelectorAll('.sd-tab-set.framework-tabs')).map(set => {
    const labels = Array.from(set.querySelectorAll(':scope > label'));
    const checked = labels.filter(label => document.getElementById(label.htmlFor).checked);
    const visible = labels.filter(label =>
        document.getElementById(label.getAttribute('aria-controls')).offsetParent !== null);
    return [checked.map(label => label.dataset.syncId).join(','),
            visible.map(label => label.dataset.syncId).join(',')];
})"""
TAB_SET = re.compile(r'class="[^"]*\bframework-tabs\b')


def selected_everywhere(page) -> set:
    """The (checked tab, visible panels) pairs over all framework tab sets of the page."""
    return {tuple(pair) for pair in page.evaluate(SELECTED)}


def pages_with_tabs() -> list[str]:
    """Pages whose built HTML has framework tab sets, most sets first."""
    counts = {page: len(TAB_SET.findall((HTML / f"{page}.html").read_text(encoding="utf-8")))
              for page in PAGES}
    return sorted((page for page in PAGES if counts[page]), key=lambda page: -counts[page])


def tab(tab_set, framework: str):
    return tab_set.locator(f':scope > label[data-sync-id="{framework}"]')


def test_tabs_switch_together_and_the_choice_persists(browse):
    require_build()
    pages = pages_with_tabs()
    assert len(pages) >= 2, "the book should have at least two pages with PyTorch | TensorFlow tabs"
    first, other = pages[:2]
    page = browse(first)
    sets = page.locator(".sd-tab-set.framework-tabs")
    assert sets.count() >= 2, f"{first} should have at least two tab sets"
    # On a first visit, every set opens on its first tab, PyTorch.
    assert selected_everywhere(page) == {("pytorch", "pytorch")}

    tab(sets.nth(1), "tensorflow").click()
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}

    page = browse(other)
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}, "choice not carried over"

    tab(page.locator(".sd-tab-set.framework-tabs").first, "pytorch").click()
    assert selected_everywhere(page) == {("pytorch", "pytorch")}
    page.reload(wait_until="load")
    assert selected_everywhere(page) == {("pytorch", "pytorch")}, "choice lost on reload"


def test_tabs_work_from_the_keyboard(browse):
    require_build()
    page = browse(pages_with_tabs()[0])
    tab(page.locator(".sd-tab-set.framework-tabs").first, "pytorch").click()
    # Clicking a label focuses its radio input; the arrow keys move within the set's radio group.
    page.keyboard.press("ArrowRight")
    assert selected_everywhere(page) == {("tensorflow", "tensorflow")}
    focused = page.evaluate(
        "() => document.querySelector(`label[for='${document.activeElement.id}']`).dataset.syncId"
    )
    assert focused == "tensorflow"
    page.keyboard.press("ArrowLeft")
    assert selected_everywhere(page) == {("pytorch", "pytorch")}


TEXT_OUTSIDE_CODE_AND_MATH = """() => {
    const main = (document.querySelector('main') || document.body).cloneNode(true);
    main.querySelectorAll('pre, code, script, style, mjx-container, .cell_output')
        .forEach(node => node.remove());
    return main.textContent;
}"""
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$\\[A-Za-z]")
ERROR_OUTPUTS = ".cell_output .traceback, .cell_output .error, .output.traceback, .output.error"
BROKEN_IMAGES = """() => Array.from(document.images)
    .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)"""
SHOWN = r"""stem => Array.from(document.querySelectorAll('img, object, embed')).filter(element => {
    const url = element.currentSrc || element.src || element.data || '';
    return new RegExp('/' + stem + '\\d*\\.svg$').test(url.split(/[?#]/)[0]);
}).map(element => element.tagName === 'IMG' ? element.naturalWidth
                                            : element.getBoundingClientRect().width)"""


def assert_no_traceback(page, name: str) -> None:
    assert page.locator(ERROR_OUTPUTS).count() == 0, f"an error output on {name}"
    outputs = page.locator(".cell_output").all_text_contents()
    assert not [text for text in outputs if "Traceback" in text], f"a traceback in a cell output on {name}"


def assert_math_typeset(page, name: str) -> None:
    has_math = page.locator(".math").count() > 0
    if has_math:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        )
        page.evaluate("() => MathJax.startup.promise")
        assert page.locator("mjx-container").count() >= page.locator(".math").count(), f"math left untypeset on {name}"
    leftover = RAW_TEX.findall(page.evaluate(TEXT_OUTSIDE_CODE_AND_MATH))
    assert leftover == [], f"untypeset TeX delimiters on {name}"
    if "$" in source_of(name).read_text(encoding="utf-8"):
        assert has_math, f"{name}'s source has math, its page none"


def load_every_image(page) -> None:
    """Bring each image into view (lazy ones load only then) and wait until it has settled."""
    for image in page.locator("img").all():
        image.scroll_into_view_if_needed()
    page.wait_for_function("() => Array.from(document.images).every(img => img.complete)")


def assert_diagrams_shown(page, name: str) -> None:
    for figure in figures_referenced(name):
        widths = page.evaluate(SHOWN, figure.stem)
        assert widths, f"{figure.name} is named in {name}'s source but not on the page"
        assert all(width > 0 for width in widths), f"{figure.name} did not load on {name}"


# --- every page, one first visit: outputs, math, images, diagrams; clean console and network -----
# One visit per page checks all four. A test per check opened each page up to four times: 107 page
# loads, about 200 s of the suite's time.

@pytest.mark.parametrize("name", PAGES)
def test_first_visit_shows_a_clean_page(browse, name):
    # `browse` asserts, after the test, that the console and the network stayed clean.
    page = browse(name)
    assert_no_traceback(page, name)
    assert_math_typeset(page, name)
    load_every_image(page)
    assert page.evaluate(BROKEN_IMAGES) == [], f"broken images on {name}"
    assert_diagrams_shown(page, name)


def test_every_committed_diagram_is_embedded_by_a_page():
    assert FIGURES, "no diagrams committed"
    shown = {figure for page in PAGES for figure in figures_referenced(page)}
    assert [rel for rel in (f.relative_to(ROOT).as_posix() for f in FIGURES)
            if ROOT / rel not in shown] == []
