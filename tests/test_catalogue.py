"""Every claim of every catalogue entry, one test per entry: adding a claim adds a check."""

import pytest

import regflow as rf

ENTRIES = sorted(rf.catalogue())


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_claims_hold(name):
    report = rf.check(name)
    assert report.rows, f"{name} declares no claims"
    assert report.passed, "\n" + report.table()


def test_every_claim_cites_its_source():
    for name, entry in rf.catalogue().items():
        assert entry.source
        for claim in entry.build().claims:
            assert claim.source, f"{name}: {type(claim).__name__} has no source"


def test_unknown_entry_and_parameter():
    with pytest.raises(KeyError, match="no catalogue entry 'scalar_net.nope'"):
        rf.get_entry("scalar_net.nope")
    with pytest.raises(ValueError, match="has no parameter depth; its parameters are"):
        rf.get_entry("scalar_net.gradient_flow").build(depth=3)


def test_parameters_reach_the_method():
    method = rf.get_entry("scalar_net.gradient_flow").build(d=3, lr=0.05)
    assert method.y0.shape[1] == 3 and method.map.dt == 0.05
