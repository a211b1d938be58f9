"""Every row of every catalogue entry can fail: under `check(..., falsify=True)` each row is
falsified by some perturbation of its system or declared an identity with its reason.

These rerun the whole catalogue about three times over, so they are marked ``falsify`` and run
as their own CI step (``python -m pytest -n 2 -m falsify``), not with the unit tests.
"""

import pytest

import regflow as rf

ENTRIES = sorted(rf.catalogue())


@pytest.mark.falsify
@pytest.mark.parametrize("name", ENTRIES)
def test_every_row_is_falsifiable_or_a_declared_identity(name):
    report = rf.check(name, falsify=True)
    assert report.passed, "\n" + report.table()
    assert not report.vacuous, "rows that pass whatever the system:\n" + rf.Report(report.vacuous).table()
    for row in report.rows:
        assert row.verdict.startswith(("falsified by", "identity: ")), row
