"""The docs show only code the tests run, and the README's links work where PyPI shows it.

The site is built here (``mkdocs build --strict``, as ``make docs`` builds it) and read as a reader sees it:
every code block on every page says its language; every Python block is lines of a file the tests run (an
example DAG, run by ``test_example_dags.py``, or a file in ``docs/examples/``, run by
``test_docs_examples.py``); every include in the pages' source names such a file, or a shown output that a test
compares with what it shows. Commands on the pages and in the README are checked against what they call: the
emulator's own parser, the Makefile's targets and the example DAGs, and connection JSON read by the hook.
"""

from __future__ import annotations

import ast
import html
import importlib
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Where the docs are published (mkdocs.yml's site_url; pyproject's Documentation URL).
SITE = "https://airflow-provider-globesms.readthedocs.io/en/stable/"
DOCS_HOST = "airflow-provider-globesms.readthedocs.io"
# The files whose code the tests run, and the shown outputs a test compares with what they show.
RUN = sorted([*(ROOT / "example_dags").glob("*.py"), *(DOCS / "examples").rglob("*.py")])
SHOWN_OUTPUTS = [DOCS / "examples" / "example_by_hand.txt", ROOT / "CHANGELOG.md"]
LANGUAGES = {"python", "bash", "text"}  # a block in any other language, or in none, fails
INCLUDE = re.compile(r'-{2}8<-{2}\s*"(?P<path>[^":]+)(?::(?P<section>[^"]+))?"')
HIGHLIGHTED = re.compile(r'<div class="(?P<cls>[^"]*\bhighlight\b[^"]*)"[^>]*>\s*<pre>(?P<body>.*?)</pre>', re.S)
EMULATOR_COMMAND = re.compile(r"(?:globesms-emulator|python3? -m airflow_provider_globesms\.emulator)\b([^`\n#]*)")
MAKE_COMMAND = re.compile(r"(?<![\w-])make ((?:[A-Za-z_]+=\S+ )*)([\w-]+)((?: [A-Z]+=\S+)*)")
FENCED_BLOCK = re.compile(r"^\s*(?:```|~~~)[^\n]*\n(.*?)^\s*(?:```|~~~)\s*$", re.S | re.M)
PYTHON_FENCE = re.compile(r"^\s*(```|~~~)\s*\{?\s*\.?(python3?|py3?|pycon)\b", re.I | re.M)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs site, built as ``make docs`` builds it: every warning an error."""
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def site_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("index.html") if "assets" not in p.parts and p.parent.name != "search")


def code_blocks(page: str) -> list[tuple[str, str]]:
    """(language, text) of every highlighted block on a built page, mkdocstrings' signatures left out."""
    blocks = []
    for match in re.finditer(
        r'<div class="(?P<cls>[^"]*\bhighlight\b[^"]*)"[^>]*>\s*<pre>(?P<body>.*?)</pre>', page, re.S
    ):
        if "doc-signature" in match["cls"]:
            continue  # generated from the code's own signatures, not an example
        language = re.search(r"\blanguage-([\w-]+)", match["cls"])
        text = html.unescape(re.sub(r"<[^>]+>", "", match["body"]))
        blocks.append((language[1] if language else "", text))
    return blocks


def looks_like_python(text: str) -> bool:
    """Whether a block shown as text is Python code (an unlabelled or indented block of it renders as text)."""
    try:
        tree = ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):
        return False
    statements = (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef, ast.ClassDef, ast.With, ast.Call)
    return any(isinstance(node, statements) for node in ast.walk(tree))


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def run_file_lines() -> dict[Path, list[str]]:
    marker = re.compile(r"#\s*-{2}8<-{2}\s*\[(start|end):")
    return {p: [line for line in lines_of(p.read_text()) if not marker.match(line)] for p in RUN}


def contains(haystack: list[str], needle: list[str]) -> bool:
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_the_docs_have_the_pages_the_provider_needs() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {
        "index.md",
        "connection.md",
        "operator.md",
        "campaign-controls.md",
        "sensor.md",
        "notifier.md",
        "hook.md",
        "exactly-once.md",
        "emulator.md",
        "sandbox.md",
        "security.md",
        "benchmarks.md",
        "known-airflow-issues.md",
        "changelog.md",
        "reference/operator.md",
    } <= names


def test_every_code_block_on_the_site_says_its_language_and_python_is_tested_code(site: Path) -> None:
    """Whatever the fence's spelling, an indented block, a docstring's example: on the built page each block
    has a language, and each Python block's lines stand, in order, in a file the tests run."""
    sources = run_file_lines()
    seen = 0
    for page in site_pages(site):
        for language, text in code_blocks(page.read_text(encoding="utf-8")):
            where = page.relative_to(site).parent.as_posix() or "index"
            assert language in LANGUAGES, f"{where}: a block in {language or 'no language'!r}: {text[:80]!r}"
            if language == "text":
                assert not looks_like_python(text), f"{where}: a text block that is Python: {text[:120]!r}"
            if language == "python":
                block = lines_of(text)
                assert any(contains(lines, block) for lines in sources.values()), (
                    f"{where}: python that no test runs: {text[:200]!r}"
                )
                seen += 1
    assert seen >= 10  # the examples were found


def test_no_page_shows_markdown_it_failed_to_read(site: Path) -> None:
    """Markdown that Python-Markdown reads otherwise than GitHub does (a list nested by two spaces, a heading
    inside a list item) builds without a warning and shows its marks as text: none may reach a page."""
    marks = re.compile(r"(^|\s)(- \*\*|#{2,6} |```)|\*\*\w[^*]*$|(^|\s)\*\*(\s|$)", re.M)
    for page in site_pages(site):
        shown = re.sub(r"<pre.*?</pre>|<code>.*?</code>", "", page.read_text(encoding="utf-8"), flags=re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "\n", shown))
        found = [line.strip() for line in text.splitlines() if marks.search(line)]
        assert found == [], f"{page.relative_to(site).parent}: {found[:3]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_include_is_a_file_the_tests_run_or_a_shown_output(page: Path) -> None:
    allowed = {p.resolve() for p in [*RUN, *SHOWN_OUTPUTS]}
    for include in INCLUDE.finditer(page.read_text(encoding="utf-8")):
        path = (ROOT / include["path"]).resolve()
        assert path in allowed, f"{page.name}: includes {include['path']}, which no test runs or compares"
        if include["section"]:
            source = path.read_text(encoding="utf-8")
            for end in ("start", "end"):
                assert f"# --8<-- [{end}:{include['section']}]" in source, f"{path.name}: no {end} of {include}"


@pytest.mark.parametrize("page", [*PAGES, ROOT / "README.md"], ids=lambda p: p.name)
def test_every_fence_names_its_language(page: Path) -> None:
    """An unlabelled fence renders as text, where a Python block would escape the check above."""
    inside = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*(```|~~~)\s*(.*)$", line)
        if fence is None:
            continue
        if not inside:
            language = re.sub(r"[{}.]", " ", fence[2]).split()
            assert [*language, ""][0] in LANGUAGES, f"{page.name}:{number}: fence without a known language"
        inside = not inside


def test_commands_on_the_pages_and_in_the_readme_exist() -> None:
    """``make`` targets and example names, ``globesms-emulator`` options (its parser), connection JSON (the
    hook reads it, refusing unknown extras): in code blocks of any language and in inline code alike."""
    from airflow_provider_globesms.emulator.cli import parser

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    examples = {p.stem for p in (ROOT / "example_dags").glob("*.py")}
    checked = 0
    for page in [*PAGES, ROOT / "README.md"]:
        text = code_on(page)
        for make in MAKE_COMMAND.finditer(text):
            assert make[2] in targets, f"{page.name}: no make target {make[2]!r}"
            for name in re.findall(r"NAME=([\w<>-]+)", make[0]):
                assert name in examples or name.startswith("<"), f"{page.name}: no example {name!r}"
            checked += 1
        for emulator in re.finditer(
            r"(?:globesms-emulator|python3? -m airflow_provider_globesms\.emulator)\b([^`\n#]*)", text
        ):
            parser().parse_args(shlex.split(emulator[1]))
            checked += 1
        for conn in re.finditer(r"AIRFLOW_CONN_(\w+)='([^']+)'", text):
            read_connection(conn[1], conn[2])
            checked += 1
    assert checked >= 12


def code_on(page: Path) -> str:
    """The code on a page: its fenced blocks (of any spelling) and its inline code, continuation lines joined."""
    text = page.read_text(encoding="utf-8").replace("\\\n", " ")
    fenced = FENCED_BLOCK.findall(text)
    inline = re.findall(r"`([^`\n]+)`", FENCED_BLOCK.sub("", text))
    return "\n".join([*fenced, *inline])


def read_connection(conn_id: str, value: str) -> None:
    from airflow.sdk import Connection

    from airflow_provider_globesms.hooks.globesms import GlobeSmsHook

    conn = Connection.from_json(value, conn_id=conn_id.lower())
    assert conn.conn_type == "globesms", value
    GlobeSmsHook().settings_from_connection(conn)  # read and checked as a task would


def test_the_emulator_page_names_every_option_with_its_default() -> None:
    from airflow_provider_globesms.emulator.cli import parser

    page = (DOCS / "emulator.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:3] for line in page.splitlines() if line.startswith("| `--")]
    actions = {name: a for a in parser()._actions for name in a.option_strings}
    documented: set[str] = set()
    for options_cell, default_cell in rows:
        options = re.findall(r"`(--[\w-]+)", options_cell)
        defaults = [d.strip() for d in default_cell.split(",")]
        for n, option in enumerate(options):
            assert option in actions, f"emulator.md: no option {option}"
            documented.update(actions[option].option_strings)
            shown = defaults[n] if len(defaults) == len(options) else defaults[0]
            default = actions[option].default
            number = re.match(r"^[\d.]+", shown)
            if isinstance(default, float) and number:
                assert float(number[0]) == default, f"{option}: {shown} is not {default}"
    assert set(actions) - documented <= {"-h", "--help"}, set(actions) - documented


def test_reference_pages_name_only_members_that_exist() -> None:
    """A method renamed in the code must not silently drop out of a reference page's member list."""
    for page in sorted((DOCS / "reference").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for target, members in re.findall(r"^::: ([\w.]+)\n(?:    .*\n)*?\s+members: \[([^\]]*)\]", text, flags=re.M):
            module_name, _, name = target.rpartition(".")
            try:
                owner = getattr(importlib.import_module(module_name), name)
            except ModuleNotFoundError:
                owner = importlib.import_module(target)
            for member in (m.strip() for m in members.split(",")):
                assert hasattr(owner, member), f"{page.name}: {target} has no {member}"


def page_anchors(site: Path, path: str) -> set[str] | None:
    page = site / path / "index.html" if path else site / "index.html"
    return set(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8"))) if page.is_file() else None


def readme_links(readme: str) -> list[str]:
    return [
        *re.findall(r"\]\(([^)\s]+)\)", readme),
        *re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", readme, flags=re.M),
        *re.findall(r"<(https?://[^>]+)>", readme),
        *re.findall(r"""(?:href|src)=["']([^"']+)""", readme),
    ]


def test_the_readme_links_work_on_pypi(site: Path) -> None:
    """PyPI shows the README without the repository: every link is absolute, and each one into the docs names
    a page (and a heading) the built site has."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = readme_links(readme)
    assert len(links) >= 8
    for link in links:
        assert link.startswith("https://"), f"README link {link!r} breaks on PyPI"
        if DOCS_HOST not in link:
            continue
        assert link.startswith(SITE), f"README link {link!r}: the docs are at {SITE}"
        path, _, anchor = link[len(SITE) :].partition("#")
        anchors = page_anchors(site, path.strip("/"))
        assert anchors is not None, f"README link {link!r}: the site has no such page"
        assert not anchor or anchor in anchors, f"README link {link!r}: no heading #{anchor}"


def test_the_readme_has_one_python_block() -> None:
    """The one ``test_docs_examples.py`` runs: no other spelling of a Python fence hides a second one."""
    assert len(PYTHON_FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8"))) == 1


def test_the_published_addresses_agree() -> None:
    """One address for the docs: mkdocs.yml, the package's metadata and the README's links."""
    assert f"site_url: {SITE}" in (ROOT / "mkdocs.yml").read_text()
    assert f'Documentation = "{SITE}"' in (ROOT / "pyproject.toml").read_text()
