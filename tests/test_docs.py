"""The documentation: README.md is the landing page, docs/ the reference (one page per topic, an
MkDocs site), and the layout page shows the package tree as it is (issue 19, section 0).

`make docs` (CI) builds the site with ``mkdocs build --strict``, which fails on a broken link,
anchor or a page missing from the nav; these tests hold what a build cannot see, and run
with the suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
import yaml

from conftest import DOCS, ROOT

README = ROOT / "README.md"
#: About 250 lines asked for; past this it is turning into the manual again.
README_MAX_LINES = 300
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _links(text: str) -> list[str]:
    """Relative link targets of a Markdown text (code blocks left out)."""
    return [target for _, target in _LINK.findall(_FENCE.sub("", text))
            if not re.match(r"[a-z]+:", target)]


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    text = _LINK.sub(r"\1", heading).replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#").strip()) for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines()
            if line.startswith("#")}


def _resolve(source: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return (source.parent / path).resolve() if path else source, anchor


def _nav_pages() -> list[str]:
    def walk(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [page for item in node for page in walk(item)]
        if isinstance(node, dict):
            return [page for value in node.values() for page in walk(value)]
        return []

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return walk(config["nav"])


# ---------------------------------------------------------------- the landing page


def test_the_readme_stays_a_landing_page() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move reference material into docs/"
    for heading in ("## Two commands", "## A five-minute tour", "## Documentation"):
        assert f"\n{heading}\n" in text, heading
    assert "The bundled checkpoints are untrained reference weights." in text
    assert "torch==2.13.0" in text  # the dev pin, and the package's own range beside it
    assert "torch>=2.2,<3" in text


def test_every_link_of_the_readme_and_the_docs_reaches_a_file_and_heading_that_exist() -> None:
    """What `mkdocs build --strict` checks inside docs/, for the README too (GitHub renders it)."""
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in _links(page.read_text(encoding="utf-8")):
            path, anchor = _resolve(page, target)
            if not path.exists():
                broken.append(f"{page.name}: {target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{page.name}: {target}: no heading #{anchor}")
    assert broken == []


def test_every_docs_page_can_be_reached_from_the_readme() -> None:
    """The landing page leads to the whole reference: each page of the site, by following links."""
    seen: set[Path] = set()
    todo = [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for target in _links(page.read_text(encoding="utf-8")):
            path, _ = _resolve(page, target)
            if path.suffix == ".md" and path.is_file():
                todo.append(path)
    pages = {(DOCS / name).resolve() for name in _nav_pages()} - {(DOCS / "index.md").resolve()}
    assert sorted(p.name for p in pages - seen) == []


def test_the_readme_test_command_is_the_one_ci_runs_and_ci_builds_the_docs() -> None:
    text = README.read_text(encoding="utf-8")
    commands = text.split("## Two commands", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in commands.splitlines()] == ["make run", "make test"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert "make test" in ci and "make docs" in ci
    assert ci.index("make test") < ci.index("make docs")  # the README's command first, as before
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in recipe


# ---------------------------------------------------------------- the site


def test_the_site_navigation_holds_every_page_of_docs_and_nothing_else() -> None:
    nav = _nav_pages()
    assert len(nav) == len(set(nav)), nav
    assert sorted(nav) == sorted(p.name for p in DOCS.glob("*.md"))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["name"] == "material"
    assert config["theme"]["font"] is False  # no web fonts: the site builds and opens offline
    assert "site/" in (ROOT / ".gitignore").read_text(encoding="utf-8")


def test_the_docs_link_their_images_and_the_manual_cross_check() -> None:
    linked = {_resolve(page, target)[0] for page in DOCS.glob("*.md")
              for target in _links(page.read_text(encoding="utf-8"))}
    text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.glob("*.md"))
    assert "](report.png)" in text
    assert (DOCS / "rtneural-cpp-check.md").resolve() in linked


# ---------------------------------------------------------------- the layout page


def _tree() -> dict[str, str]:
    """The folders of docs/layout.md's tree, each with what the line says it holds."""
    page = (DOCS / "layout.md").read_text(encoding="utf-8")
    block = page.split("## The tree", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    folders = {}
    for line in block.splitlines():
        assert line and not line.startswith(" "), f"one line per folder: {line!r}"
        name, _, what = line.partition(" ")
        if name.endswith("/"):
            assert name.rstrip("/") not in folders, f"listed twice: {name}"
            folders[name.rstrip("/")] = what.strip()
    return folders


def test_the_layout_page_lists_every_folder_of_the_package() -> None:
    package = {path.relative_to(ROOT).as_posix() for path in [ROOT / "modelreg", *(ROOT / "modelreg").rglob("*")]
               if path.is_dir() and path.name != "__pycache__" and not path.name.startswith(".")}
    tree = _tree()
    assert sorted(package - set(tree)) == []
    assert all(tree[folder] for folder in package)  # each says what it holds
    assert sorted(folder for folder in tree if not (ROOT / folder).is_dir()) == []  # nothing stale


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="not a git checkout: the tracked folders are unknown")
def test_the_layout_page_lists_every_folder_of_the_repository() -> None:
    """Every folder holding tracked files, down to two levels (deeper ones through a listed folder)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    folders = {"/".join(Path(name).parts[:depth]) for name in files
               for depth in (1, 2) if len(Path(name).parts) > depth}
    tree = _tree()
    missing = sorted(folder for folder in folders
                     if folder not in tree and not any(listed.startswith(folder + "/") for listed in tree))
    assert missing == []
