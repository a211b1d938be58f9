"""The documentation site's invariants, checked without building it (``mkdocs build --strict``
builds it): every public name has an API entry, every notebook and page is in the nav, and every
file the nav names exists."""

import ast
import importlib
import pathlib
import re

import pytest
import yaml

import regflow

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
#: A mkdocstrings directive: ``::: regflow.name``.
DIRECTIVE = re.compile(r"^:::\s+(regflow(?:\.\w+)+)\s*$", re.M)


class _Loader(yaml.SafeLoader):
    """mkdocs.yml's loader: its ``!ENV`` and ``!!python/name`` tags read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


@pytest.fixture(scope="module")
def config():
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)


def nav_files(nav):
    """Every file the nav names (a nested list of pages, ``title: file`` and sections)."""
    for item in nav:
        values = item.values() if isinstance(item, dict) else [item]
        for value in values:
            if isinstance(value, list):
                yield from nav_files(value)
            elif not re.match(r"[a-z]+://", value):
                yield value


def generated_pages():
    """Pages written at build time by docs/hooks.py (module constants ending in ``_PAGE``)."""
    tree = ast.parse((DOCS / "hooks.py").read_text())
    return {node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id.endswith("_PAGE") for t in node.targets)}


def api_targets():
    return {m.group(1): path.name for path in sorted((DOCS / "api").glob("*.md"))
            for m in DIRECTIVE.finditer(path.read_text())}


def test_every_public_name_has_an_api_entry():
    documented = {target.removeprefix("regflow.") for target in api_targets()}
    missing = sorted(set(regflow.__all__) - documented)
    assert not missing, f"names of regflow.__all__ with no '::: regflow.NAME' in docs/api/: {missing}"


def test_every_api_entry_names_an_existing_object():
    for target, page in api_targets().items():
        module, _, attr = target.rpartition(".")
        obj = importlib.import_module(module)
        assert hasattr(obj, attr), f"docs/api/{page}: '::: {target}' names nothing ({module} has no {attr})"


def test_every_notebook_is_in_the_nav(config):
    listed = set(nav_files(config["nav"]))
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    missing = [p.name for p in notebooks if f"notebooks/{p.name}" not in listed]
    assert not missing, f"notebooks not in mkdocs.yml's nav: {missing}"


def test_notebooks_are_linked_not_copied():
    link = DOCS / "notebooks"
    assert link.is_symlink() and link.resolve() == (ROOT / "notebooks").resolve()


def test_every_nav_file_exists(config):
    generated = generated_pages()
    assert generated == {"catalogue.md"}
    missing = [f for f in nav_files(config["nav"]) if f not in generated and not (DOCS / f).is_file()]
    assert not missing, f"mkdocs.yml's nav names files that do not exist under docs/: {missing}"


def test_every_page_is_in_the_nav(config):
    listed = set(nav_files(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not pages - listed, f"pages under docs/ missing from the nav: {sorted(pages - listed)}"
