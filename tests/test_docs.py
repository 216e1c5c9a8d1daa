"""The docs show only code the tests run, and the README's links work where PyPI shows it.

Every Python block on a docs page is an include (``--8<-- "file:section"``) of an example DAG (run by
``test_example_dags.py``) or of a file in ``docs/examples/`` (run by ``test_docs_examples.py``); a Python block
written inline fails here. Shell blocks are checked against what they call: the emulator's own parser, the
Makefile's targets, the connection JSON read by the hook. The site itself is built by ``make docs``
(``mkdocs build --strict``, part of ``make test``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Where the docs are published (mkdocs.yml's site_url; pyproject's Documentation URL).
SITE = "https://airflow-provider-globesms.readthedocs.io/en/stable/"
INCLUDE = re.compile(r'^-{2}8<-{2} "(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"$')
TESTED_FOLDERS = ("example_dags", "docs/examples")
EMULATOR_MODULE = "airflow_provider_globesms.emulator"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced block, in order; lines without the block's indent."""
    blocks: list[tuple[str, list[str]]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if start is None:
            i += 1
            continue
        indent, body = len(start["indent"]), []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        blocks.append((start["lang"], body))
        i += 1
    return blocks


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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_python_block_on_a_page_is_a_tested_file(page: Path) -> None:
    for lang, body in fenced_blocks(page.read_text(encoding="utf-8")):
        if lang not in ("python", "py"):
            continue
        lines = [line for line in body if line.strip()]
        assert lines, f"{page.name}: an empty python block"
        for line in lines:
            include = INCLUDE.match(line.strip())
            assert include, f"{page.name}: python written inline, not included from a tested file: {line!r}"
            path = include["path"]
            assert path.startswith(TESTED_FOLDERS), f"{page.name}: {path} is not in {TESTED_FOLDERS}"
            source = (ROOT / path).read_text(encoding="utf-8")
            if include["section"]:
                assert f"# --8<-- [start:{include['section']}]" in source, f"{path} has no {include['section']}"


def test_every_file_in_docs_examples_is_run_by_a_test() -> None:
    runners = (ROOT / "tests" / "test_docs_examples.py").read_text(encoding="utf-8")
    for example in sorted((DOCS / "examples").glob("*.py")):
        assert f'"{example.name}"' in runners, f"docs/examples/{example.name} is run by no test"


def test_every_shell_command_on_a_page_is_one_that_exists() -> None:
    """``globesms-emulator`` lines parse with its parser, ``make`` targets exist, connection JSON is read."""
    from airflow.sdk import Connection

    from airflow_provider_globesms.emulator.cli import parser
    from airflow_provider_globesms.hooks.globesms import GlobeSmsHook

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    checked = 0
    for page in [*PAGES, ROOT / "README.md"]:
        for lang, body in fenced_blocks(page.read_text(encoding="utf-8")):
            if lang not in ("bash", "sh", "shell"):
                continue
            for command in shell_commands(body):
                words = shlex.split(command)
                if words[0] == "globesms-emulator" or words[:3] == ["python", "-m", EMULATOR_MODULE]:
                    parser().parse_args(words[1:] if words[0] == "globesms-emulator" else words[3:])
                elif words[0] == "make":
                    assert words[1] in targets, f"{page.name}: no make target {words[1]!r}"
                elif words[0] == "export" and words[1].startswith("AIRFLOW_CONN_"):
                    name, _, value = words[1].partition("=")
                    conn = Connection.from_json(value, conn_id=name.removeprefix("AIRFLOW_CONN_").lower())
                    assert conn.conn_type == "globesms", f"{page.name}: {command}"
                    GlobeSmsHook().settings_from_connection(conn)  # read and checked as a task would
                else:
                    continue
                checked += 1
    assert checked >= 6  # the blocks were found: the README's and the pages' commands


def shell_commands(lines: list[str]) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = "\n".join(lines).replace("\\\n", " ")
    return [c for c in (line.split(" #")[0].strip() for line in joined.split("\n")) if c and not c.startswith("#")]


def page_anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+?)\s*$", page.read_text(encoding="utf-8"), flags=re.M)
    return {slugify(h, "-") for h in headings}


def test_the_readme_links_work_on_pypi() -> None:
    """PyPI shows the README without the repository: every link is absolute, into the published docs or
    elsewhere on the web, and each docs link names a page (and a heading) that exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r"<(https?://[^>]+)>", readme)
    assert len(links) >= 8
    for link in links:
        assert link.startswith("https://"), f"README link {link!r} breaks off GitHub and on PyPI"
        if not link.startswith(SITE):
            continue
        path, _, anchor = link[len(SITE) :].partition("#")
        page = DOCS / (path.rstrip("/") + ".md" if path else "index.md")
        assert page.is_file(), f"README link {link!r}: no page {page.relative_to(ROOT)}"
        if anchor:
            assert anchor in page_anchors(page), f"README link {link!r}: no heading #{anchor}"


def test_the_published_addresses_agree() -> None:
    """One address for the docs: mkdocs.yml, the package's metadata and the README's links."""
    assert f"site_url: {SITE}" in (ROOT / "mkdocs.yml").read_text()
    assert f'Documentation = "{SITE}"' in (ROOT / "pyproject.toml").read_text()
