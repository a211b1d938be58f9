"""The claim report (`regflow check ... --report DIR`): valid markdown, a figure for every row
that has a trace, portraits from given runs, provenance per entry."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

import regflow._report as report_module  # noqa: E402
from regflow._catalogue import Method, get_entry  # noqa: E402
from regflow._trajectory import Trajectory  # noqa: E402
from regflow._versions import versions  # noqa: E402
from regflow.claims import Report, Row, Trace  # noqa: E402
from regflow.claims._rows import TRACE_KINDS  # noqa: E402

ENTRY = "scalar_net.gradient_flow"
OTHER = "toy.rotation"  # not a catalogue entry: tables and claim figures only
PIPED = "|cos(grad q, f)| at 4 points"
T = np.linspace(0.0, 1.0, 11)
PNG = b"\x89PNG\r\n\x1a\n"


def _rows(entry, params, verdicts=False):
    """Rows of every trace kind, cells with pipes, and a row without a trace."""
    steps = np.array([0.02, 0.01, 0.005])
    kinds = {
        "line": Trace(T, np.exp(-np.outer([1.0, 2.0], T)), "t", "L", "line", (T, np.exp(-T), "exp(-t)")),
        "drift": Trace(T, 1e-12 * np.sin(7 * T), "t", "relative drift of q", "drift", 1e-6),
        "loglog": Trace(steps, 0.3 * steps, "step size dt", "max error", "loglog", (steps, 0.3 * steps, "slope 1")),
        "points": Trace(np.arange(3), [0.0, 1.0, 4.0], "eigenvalue index", "eigenvalue", "points",
                        (np.arange(3), [0.0, 1.0, 4.0], "expected")),
    }
    common = {"params": params, "seed": 3, "versions": versions()}
    rows = [Row(entry, f"Claim({kind})", PIPED if kind == "points" else f"{kind} check", "eq 1 | eq 2",
                1e-9, "< 1e-06", True, trace=trace, verdict="falsified by sign" if verdicts else "", **common)
            for kind, trace in kinds.items()]
    rows.append(Row(entry, "Holds(level)", "a level", "sec 2", 0.5, "in [0, 1]", True,
                    trace=Trace([0.0], [0.5], "", "figure", "points", 1.0), **common))
    rows.append(Row(entry, "Spectrum(x)", "error: no loss given | fix it", "sec 3", float("nan"), "-", False,
                    verdict="vacuous" if verdicts else "", **common))
    return rows


def _runs(method):
    """A flow and a map run of ``method`` made by hand (straight lines to the minima set)."""
    starts = method.y0
    ends = starts / np.sqrt(np.prod(starts, axis=1, keepdims=True))
    s = np.linspace(0.0, 1.0, 15)[None, :, None]
    path = starts[:, None] + s * (ends - starts)[:, None]
    return {"flow": Trajectory(s[0, :, 0], path, names=method.flow.names, meta={"system": "ODE(f)"}),
            "map": Trajectory(s[0, ::2, 0], path[:, ::2], names=method.flow.names, meta={"method": "iterate"})}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A report of two entries, written once with given runs (the portrait must not rerun them)."""
    directory = tmp_path_factory.mktemp("report")
    method = get_entry(ENTRY).build()
    reports = {ENTRY: Report(tuple(_rows(ENTRY, get_entry(ENTRY).params, verdicts=True))),
               OTHER: Report(tuple(_rows(OTHER, {"omega": 1.0})))}
    patch = pytest.MonkeyPatch()
    patch.setattr(Method, "run_flow", lambda *a, **k: pytest.fail("the portrait reran the flow"))
    patch.setattr(report_module, "iterate", lambda *a, **k: pytest.fail("the portrait reran the map"))
    try:
        path = report_module.write_report(reports, str(directory), progress=False, runs={ENTRY: _runs(method)})
    finally:
        patch.undo()
    with open(path) as fh:
        text = fh.read()
    return directory, reports, text, MarkdownIt("commonmark").enable("table").parse(text)


def _text(inline):
    return "".join(child.content for child in inline.children if child.type in ("text", "code_inline"))


def _tables(tokens):
    """Each table as a list of rows, each a list of its cells' text (the header first)."""
    tables, row = [], None
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            row.append(_text(tokens[i + 1]) if tokens[i + 1].type == "inline" else "")
        elif tok.type == "tr_close":
            tables[-1].append(row)
    return tables


def test_every_table_row_has_the_header_columns_and_pipes_survive(written):
    _, reports, _, tokens = written
    tables = _tables(tokens)
    assert len(tables) == len(reports)
    for table, report in zip(tables, reports.values()):
        head, *body = table
        assert len(body) == len(report.rows)
        assert all(len(row) == len(head) for row in body), [len(r) for r in body]
        assert [row[head.index("check")] for row in body] == [r.check for r in report.rows]
        assert {row[head.index("source")] for row in body} >= {"eq 1 | eq 2"}
        assert [row[head.index("ok")] for row in body] == ["PASS" if r.passed else "FAIL" for r in report.rows]
    head = tables[0][0]
    assert "falsification" in head and tables[0][1][head.index("falsification")] == "falsified by sign"
    assert "falsification" not in tables[1][0]
    assert any(PIPED in row for row in tables[0][1:])


def test_every_image_link_is_an_existing_png(written):
    directory, _, _, tokens = written
    images = [child.attrGet("src") for tok in tokens if tok.type == "inline" for child in tok.children
              if child.type == "image"]
    assert sorted(images) == sorted(["scalar_net_gradient_flow_portrait.png", "scalar_net_gradient_flow_claims.png",
                                     "toy_rotation_claims.png"])
    for src in images:
        with open(os.path.join(directory, src), "rb") as fh:
            assert fh.read(8) == PNG


def test_entries_list_parameters_seed_versions_and_untraced_rows(written):
    _, _, text, _ = written
    for entry in (ENTRY, OTHER):
        section = text.split(f"### {entry.replace('_', chr(92) + '_')}")[1].split("###")[0]
        assert "seed `3`" in section and f"regflow {versions()['regflow']}" in section
        assert "Rows without a figure:" in section and "#6 Spectrum(x): error: no loss given \\| fix it" in section
    assert "`d=2`" in text and "`omega=1.0`" in text
    assert text.startswith("# regflow claim report\n\n10 passed, 2 failed; falsified 4")


def test_every_trace_kind_gets_a_panel():
    rows = _rows(OTHER, {}, verdicts=True)
    fig = report_module.traces_figure(OTHER, list(enumerate(rows, 1)))
    try:
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == sum(r.trace is not None for r in rows)
        by_kind = dict(zip([r.trace.kind for r in rows if r.trace is not None], panels))
        assert set(by_kind) == set(TRACE_KINDS)
        for ax, row in zip(panels, rows):
            assert ax.get_title().startswith(f"#{rows.index(row) + 1} {row.claim}")
            assert "PASS: 1e-09" in ax.get_title() or "PASS: 0.5" in ax.get_title()
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            assert "measured" in labels[0] and len(labels) == 2  # the data and the reference
        assert by_kind["drift"].get_yscale() == "symlog"
        assert by_kind["loglog"].get_xscale() == by_kind["loglog"].get_yscale() == "log"
        verdicts = [t.get_text() for ax in panels for t in ax.texts]
        assert verdicts.count("falsified by sign") == 4
    finally:
        plt.close(fig)


def test_progress_bar_counts_figures(tmp_path, capsys):
    reports = {OTHER: Report(tuple(_rows(OTHER, {})))}
    report_module.write_report(reports, str(tmp_path), progress=True)
    err = capsys.readouterr().err
    assert "report" in err and "1/1" in err


@pytest.mark.parametrize("call, match", [
    (lambda d: report_module.write_report({"a": 1}, d), "reports must be a mapping"),
    (lambda d: report_module.write_report({}, d, runs={"a": 1}), "runs must be a mapping"),
    (lambda d: report_module.write_report({}, d, runs={"a": {"flow": 1}}), r"runs\['a'\]"),
])
def test_bad_input_names_the_argument(call, match, tmp_path):
    with pytest.raises(TypeError, match=match):
        call(str(tmp_path))
