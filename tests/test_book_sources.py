"""Static checks of the book's sources, in the spirit of d2l's tabcheck: no build needed.

- every chapter page is a MyST markdown notebook (jupytext front matter and a kernel);
- code cells carry only known tags, and every PyTorch block has its TensorFlow twin (and back);
- _toc.yml and chapters/ agree: each listed page exists, each page is listed.
"""

import re
from pathlib import Path

import pytest
import yaml

from autograder.chapters import all_chapters, chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SLUGS = [record.slug for record in all_chapters()]
FRAMEWORK_TAGS = {"pytorch", "tensorflow"}
# raises-exception is deliberately absent: a page shows working code, and an error output would
# look like a broken book.
ALLOWED_TAGS = FRAMEWORK_TAGS | {
    "hide-input", "hide-output", "remove-input", "remove-output", "remove-cell",
}
PAGES = sorted(CHAPTERS.glob("**/*.md"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    if not match:
        return {}
    return yaml.safe_load(match.group(1)) or {}


def parse_cells(text: str) -> list[dict]:
    """Each code-cell as {line, options, source, between}: `between` is the text since the
    previous cell (to tell adjacent twins from cells with prose between them)."""
    lines = text.splitlines()
    cells, gap_start, i = [], 0, 0
    while i < len(lines):
        opening = re.match(r"^(`{3,}|~{3,})\{code-cell\}", lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening.group(1), i
        between = "\n".join(lines[gap_start:start])
        i += 1
        options: dict = {}
        if i < len(lines) and lines[i].strip() == "---":  # YAML option block
            end = lines.index("---", i + 1)
            options = yaml.safe_load("\n".join(lines[i + 1 : end])) or {}
            i = end + 1
        while i < len(lines) and re.match(r"^:\w[\w-]*:", lines[i]):  # `:key: value` options
            key, _, value = lines[i][1:].partition(":")
            options[key] = yaml.safe_load(value.strip())
            i += 1
        body_start = i
        while i < len(lines) and not (
            lines[i].startswith(fence[0] * len(fence)) and lines[i].strip(fence[0]) == ""
        ):
            i += 1
        source = "\n".join(lines[body_start:i])
        cells.append({"line": start + 1, "options": options, "source": source, "between": between})
        i += 1
        gap_start = i
    return cells


def code_cells(text: str) -> list[tuple[int, list[str], str]]:
    """(line number, tags, text before the cell since the previous cell) for each code-cell."""
    result = []
    for cell in parse_cells(text):
        tags = cell["options"].get("tags") or []
        result.append((cell["line"], list(tags) if isinstance(tags, list) else [tags],
                       cell["between"]))
    return result


def twin_problems(cells) -> list[str]:
    """Runs of adjacent framework cells must pair up: PyTorch block next to TensorFlow block."""
    problems, run = [], []

    def close(run):
        blocks = []  # [framework, first line] per block of same-framework cells
        for line, framework in run:
            if not blocks or blocks[-1][0] != framework:
                blocks.append([framework, line])
        if len(blocks) % 2:
            framework, line = blocks[-1]
            problems.append(f"line {line}: '{framework}' block without an adjacent twin")

    for line, tags, between in cells:
        frameworks = FRAMEWORK_TAGS & set(tags)
        if len(frameworks) > 1:
            problems.append(f"line {line}: cell tagged with both frameworks")
        adjacent = between.strip() == ""
        if run and not (adjacent and len(frameworks) == 1):
            close(run)
            run = []
        if len(frameworks) == 1:
            run.append((line, frameworks.pop()))
    if run:
        close(run)
    return problems


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


# --- the checks -----------------------------------------------------------------------------------


def test_chapter_folders_are_the_contracts_slugs():
    assert sorted(path.name for path in CHAPTERS.iterdir() if path.is_dir()) == SLUGS


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_page_is_a_myst_notebook(page):
    meta = front_matter(page.read_text(encoding="utf-8"))
    assert meta.get("jupytext", {}).get("text_representation", {}).get("format_name") == "myst", (
        "missing jupytext front matter with format_name: myst"
    )
    assert meta.get("kernelspec", {}).get("name"), "missing kernelspec"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_code_cells_use_known_tags(page):
    unknown = [
        f"line {line}: {tag}"
        for line, tags, _ in code_cells(page.read_text(encoding="utf-8"))
        for tag in tags
        if tag not in ALLOWED_TAGS
    ]
    assert unknown == [], f"allowed tags: {sorted(ALLOWED_TAGS)}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_framework_block_has_its_twin(page):
    assert twin_problems(code_cells(page.read_text(encoding="utf-8"))) == []


def test_every_toc_entry_exists():
    missing = [
        name for name in toc_files()
        if not any((ROOT / f"{name}{suffix}").is_file() for suffix in (".md", ".ipynb"))
    ]
    assert missing == []


def test_every_chapter_page_is_in_the_toc():
    listed = set(toc_files())
    unlisted = [rel(page) for page in PAGES if rel(page)[: -len(".md")] not in listed]
    assert unlisted == []


def test_every_chapter_has_an_index_page_in_order():
    chapters = [name for name in toc_files() if name.endswith("/index")]
    assert chapters == [f"chapters/{slug}/index" for slug in SLUGS]


# --- the checker itself must catch what it is meant to catch ------------------------------------

FENCE = "```"


def cell(tags: str, code: str = "pass") -> str:
    return f"{FENCE}{{code-cell}} ipython3\n:tags: [{tags}]\n{code}\n{FENCE}\n"


@pytest.mark.parametrize(
    "source, expected",
    [
        (cell("pytorch") + "\n" + cell("tensorflow"), 0),
        (cell("tensorflow") + cell("pytorch") + "\n" + cell("pytorch"), 0),
        (cell("pytorch") + "\nSome prose.\n\n" + cell("tensorflow"), 2),
        (cell("pytorch") + cell("tensorflow") + cell("pytorch"), 1),
        (cell("pytorch, tensorflow"), 1),
        (cell("hide-input") + cell("pytorch"), 1),
    ],
)
def test_twin_checker_on_examples(source, expected):
    assert len(twin_problems(code_cells(source))) == expected


def test_tag_parser_reads_both_option_syntaxes():
    yaml_block = f"{FENCE}{{code-cell}} ipython3\n---\ntags: [raises-exception]\n---\n1/0\n{FENCE}\n"
    assert [tags for _, tags, _ in code_cells(yaml_block + cell("pytorch"))] == [
        ["raises-exception"], ["pytorch"],
    ]


# --- pages that teach, exercises that assess (issue 8) -------------------------------------------
import ast  # noqa: E402

SETUP_IMPORT = "from book.pages import *"
# The exercise names of ../shared/CONTRACT.md, in case a master lags behind the contract.
CONTRACT_EXERCISES = {
    "01_background": {"softmax", "nadaraya_watson", "attention_pool"},
    "02_principles": {
        "dot_product_scores", "scaled_dot_product_scores", "additive_scores", "general_scores",
        "masked_softmax", "padding_mask", "causal_mask", "tree_mask", "scaled_dot_product_attention",
        "segment_mask", "decoder_masks", "bahdanau_step", "attention_pooling",
    },
    "03_math": {
        "logsumexp", "softmax_jacobian", "attention_backward", "sinusoidal_positional_encoding",
        "attention_cost", "attention_entropy",
    },
    "04_code": {
        "split_heads", "merge_heads", "MultiHeadAttention", "AdditiveAttention", "TransformerEncoderBlock",
        "TransformerDecoderBlock",
    },
    "05_applications": {"image_to_patches", "target_attention", "train_aspect_sentiment"},
    "06_efficiency": {
        "merge_softmax_stats", "flash_attention", "sliding_window_mask", "linear_attention", "decode_step",
        "grouped_query_attention",
    },
}
TAUGHT_CHAPTERS = ["01_background", "02_principles", "03_math", "04_code", "05_applications", "06_efficiency"]   # written to the second edition's page rules
TAUGHT_PAGES = [page for slug in TAUGHT_CHAPTERS for page in sorted((CHAPTERS / slug).glob("*.md"))]


def exercise_names(slug: str) -> set[str]:
    """The exercises of a chapter: those its record lists (the masters follow it, test_chapters.py),
    and those the contract lists."""
    return set(CONTRACT_EXERCISES.get(slug, set())) | set(chapter(slug).exercises)


def bound_names(source: str) -> set[str]:
    """Every name a cell binds: def, class, assignment targets, imports, loop variables."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


def shared_helpers() -> set[str]:
    """The functions book/pages.py defines: a page that defines one again is copying it."""
    tree = ast.parse((ROOT / "book" / "pages.py").read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def graded_names_on_page(page: Path) -> list[str]:
    forbidden = exercise_names(page.parent.name)
    return [f"line {cell['line']}: {name}"
            for cell in parse_cells(page.read_text(encoding="utf-8"))
            for name in sorted(bound_names(cell["source"]) & forbidden)]


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_page_defines_no_graded_function(page):
    """A page shows a special case or a built-in; a function under an exercise's name is a
    solution handed out (tests/test_assessment.py measures what the pages would earn)."""
    assert graded_names_on_page(page) == []


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_first_code_cell_imports_the_shared_setup(page):
    cells = parse_cells(page.read_text(encoding="utf-8"))
    if cells:
        assert cells[0]["source"].strip() == SETUP_IMPORT


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_page_repeats_no_setup_or_plotting_helper(page):
    helpers = shared_helpers()
    found = [f"line {cell['line']}: {problem}"
             for cell in parse_cells(page.read_text(encoding="utf-8"))
             for problem in sorted(bound_names(cell["source"]) & helpers)
             + (["os.environ"] if "os.environ" in cell["source"] else [])
             + (["keep_frameworks_apart"] if "keep_frameworks_apart" in cell["source"] else [])]
    assert found == []


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_every_plot_has_a_caption(page):
    uncaptioned = [f"line {cell['line']}"
                   for cell in parse_cells(page.read_text(encoding="utf-8"))
                   if "plt.show()" in cell["source"]
                   and not (cell["options"].get("mystnb") or {}).get("figure", {}).get("caption")]
    assert uncaptioned == []


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_page_opens_with_goals_and_ends_with_what_to_remember(page):
    text = page.read_text(encoding="utf-8")
    first_section = text.find("\n## ")
    assert "After this page you can" in text[:first_section], "no goals before the first section"
    assert "\n## What to remember" in text


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_figures_are_committed_svgs(page):
    paths = re.findall(r"^```\{figure\}\s+(\S+)", page.read_text(encoding="utf-8"), re.MULTILINE)
    wrong = [p for p in paths if not (p.endswith(".svg") and (page.parent / p).is_file())]
    assert wrong == []


def test_graded_name_checker_catches_a_solution(tmp_path):
    page = tmp_path / "02_principles" / "p.md"
    page.parent.mkdir()
    page.write_text(cell("pytorch", "def masked_softmax(s, m=None):\n    return s")
                    + cell("tensorflow", "causal_mask = lambda n: n") + cell("", "x = 1"))
    assert graded_names_on_page(page) == ["line 1: masked_softmax", "line 6: causal_mask"]
