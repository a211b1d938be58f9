"""MkDocs hooks of the regflow site, and the Griffe extension of its API pages.

``catalogue.md`` is not a file in ``docs/``: it is written at build time from ``rf.catalogue()``
(every entry, its source and parameters, each claim with its source, its erratum and grade or its
declared identity), so the page always shows the catalogue as it is.  ``:math:`...``` roles and
``.. math::`` blocks of the docstrings it quotes become MathJax (arithmatex) math; `RstMath` does the same for the docstrings of the API pages.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re

import griffe
from mkdocs.structure.files import File

CATALOGUE_PAGE = "catalogue.md"
#: Fields whose callable names a claim when it has no ``name``.
LABEL_FIELDS = ("q", "margin", "formula", "printed", "measure", "error", "on")

INTRO = """\
# Catalogue and errata

The catalogue (`systems/`, importable as `regflow.systems`) declares each paper's learning
methods as `rf.Method`s with the claims the paper makes, each with its equation number.  This
page is generated from `rf.catalogue()` when the site is built.  Run an entry's claims with
`regflow check NAME` (add `--falsify` to see that every row can fail), or from Python with
`rf.check("NAME")`.

Where a printed formula is not the one checked, the claim records it as an erratum with a
grade: **erratum** (it is wrong), **convention** (right in another convention, e.g. of the
learning rate) or **reading** (right under another reading); a row of the check measures the
gap.  All of them are listed under [Errata](#errata) at the end.
"""


def math(text: str) -> str:
    """reStructuredText math of a docstring as arithmatex math."""
    text = re.sub(r":math:`([^`]*)`", lambda m: f"${m.group(1).strip()}$", text)
    return re.sub(r"\.\. math::\s*(.+?)(?:\n\s*\n|\Z)",
                  lambda m: "\n$$\n" + " ".join(m.group(1).split()) + "\n$$\n\n", text, flags=re.S)


def cell(text) -> str:
    """One table cell: one line, math converted, pipes escaped (``\\vert`` inside math)."""
    parts = re.split(r"(\$[^$]*\$)", math(" ".join(str(text or "").split())))
    return "".join(p.replace("|", r"\vert ") if p.startswith("$") else p.replace("|", "\\|") for p in parts)


def code(text) -> str:
    """One table cell in a code span (pipes inside backticks do not split a table row)."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def first_paragraph(doc: str) -> str:
    return (doc or "").strip().split("\n\n")[0]


def claim_label(claim) -> str:
    """``Type(name)``: the claim's name, or the name of the callable it measures."""
    label = claim.name
    for field in LABEL_FIELDS:
        if label:
            break
        value = getattr(claim, field, None)
        label = getattr(value, "__name__", None) if callable(value) else None
        label = None if label == "<lambda>" else label
    return f"{type(claim).__name__}({label})" if label else type(claim).__name__


def claim_note(claim) -> str:
    if claim.erratum:
        return f"**{claim.grade or 'erratum'}**: {claim.erratum}"
    if claim.identity:
        return f"identity: {claim.identity}"
    return ""


def family_intro(family: str) -> str:
    try:
        module = importlib.import_module(f"regflow.systems.{family}")
    except ImportError:
        return ""
    return first_paragraph(inspect.getdoc(module) or "")


def catalogue_markdown() -> str:
    import regflow as rf

    entries = rf.catalogue()
    families: dict[str, list] = {}
    for name, entry in entries.items():
        families.setdefault(name.split(".")[0], []).append(entry)
    out = [INTRO, f"{len(entries)} entries in {len(families)} families.\n"]
    errata = []
    for family, members in families.items():
        out.append(f"## `{family}`\n")
        intro = family_intro(family)
        if intro:
            out.append(math(intro) + "\n")
        for entry in members:
            method = entry.build()
            params = ", ".join(f"`{k}={v!r}`" for k, v in entry.params.items()) or "none"
            out.append(f"### `{entry.name}`\n")
            out.append(f"**Source**: {cell(entry.source)}  \n**Parameters**: {params}\n")
            doc = first_paragraph(entry.doc)
            if doc:
                out.append(math(doc) + "\n")
            out.append("| claim | source | erratum or identity |\n|---|---|---|")
            for claim in method.claims:
                out.append(f"| {code(claim_label(claim))} | {cell(claim.source)} | {cell(claim_note(claim))} |")
                if claim.erratum:
                    errata.append((entry.name, claim))
            out.append("")
            perturbations = [p.name for p in method.perturbations]
            if perturbations:
                out.append("**Perturbations** (falsification): " + "; ".join(cell(p) for p in perturbations) + "\n")
    out.append("## Errata\n")
    out.append(f"{len(errata)} printed formulas differ from the ones checked.\n")
    out.append("| entry | claim | source | grade | printed, and the evidence |\n|---|---|---|---|---|")
    for name, claim in errata:
        out.append(f"| `{name}` | {code(claim_label(claim))} | {cell(claim.source)} | "
                   f"{claim.grade or 'erratum'} | {cell(claim.erratum)} |")
    return "\n".join(out) + "\n"


def on_files(files, config):
    """Add the generated catalogue page."""
    files.append(File.generated(config, CATALOGUE_PAGE, content=catalogue_markdown()))
    return files


#: Docstring sections whose entries may be written ``name : description`` instead of ``name : type``.
TYPED_SECTIONS = ("parameters", "other parameters", "attributes", "returns", "yields", "receives")
#: More words than this after ``name :`` make a description, not a type.
TYPE_WORDS = 5


def reads_as_description(annotation) -> bool:
    """Whether the text numpydoc takes for a type is a sentence (``y0 : the start: ...``)."""
    if not isinstance(annotation, str):
        return False
    text = annotation.strip()
    return len(text.split()) > TYPE_WORDS or "``" in text or text.endswith(".") or ": " in text


class RstMath(griffe.Extension):
    """Docstrings' reStructuredText math (``:math:`x```, ``.. math::``) as arithmatex math, their
    ``Example`` sections read as numpydoc's ``Examples`` (doctest code, not Markdown), and an entry
    ``name : description`` of a Parameters (Attributes, Returns ...) section shown as a
    description rather than as its type."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            text = re.sub(r"(?m)^Example\n-------$", "Examples\n--------", obj.docstring.value)
            obj.docstring.value = math(text) if "math:" in text else text

    def on_package(self, *, pkg, **kwargs):
        for obj in _objects(pkg):
            if obj.docstring is None:
                continue
            sections, warned = _parse_quietly(obj.docstring)
            if warned:
                # left as it is, and parsed again (with its warnings) if a page shows it
                del obj.docstring.__dict__["parsed"]
                continue
            for section in sections:
                if section.kind.value in TYPED_SECTIONS and isinstance(section.value, list):
                    for item in section.value:
                        if reads_as_description(getattr(item, "annotation", None)):
                            item.description = f"{item.annotation}\n{item.description}".strip()
                            item.annotation = None
                    if section.kind.value in ("returns", "yields") and len(section.value) > 1 and all(
                            not item.name and item.annotation is None for item in section.value):
                        # an unindented paragraph under Returns: one value, not one per line
                        first = section.value[0]
                        first.description = "\n".join(item.description for item in section.value)
                        section.value[:] = [first]


def _objects(obj):
    """``obj`` and every member under it, aliases left out (their targets are visited)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _parse_quietly(docstring):
    """``docstring.parsed`` (cached), and whether parsing it logged a warning (not shown here)."""
    records = []
    capture = logging.getLogger("regflow.docs.griffe-capture")
    capture.propagate, capture.handlers = False, []
    capture.addHandler(logging.Handler())
    capture.handlers[0].emit = records.append
    real, griffe.logger._logger = griffe.logger._logger, capture
    try:
        return docstring.parsed, bool(records)
    finally:
        griffe.logger._logger = real

