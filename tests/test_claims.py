"""Claims fail when the statement is false: each claim type is shown a true and a false case."""

import jax.numpy as jnp
import numpy as np
import pytest

import regflow as rf
from conftest import two_layer_loss

STARTS = np.array([[0.3, 1.6], [1.8, 0.2]])


def _method(claims, **kw):
    flow = rf.gradient_flow(two_layer_loss, names=("w1", "w2"))
    gd = rf.gradient_descent(two_layer_loss, lr=0.01, names=("w1", "w2"))
    kw.setdefault("options", {"backend": "scipy"})  # no solver to compile: these tests are about the claims
    return rf.Method(flow=flow, map=gd, claims=claims, y0=STARTS, t1=2.0, steps=200, **kw)


def imbalance(w, a=None):
    return w[0] ** 2 - w[1] ** 2


def product(w, a=None):
    return w[0] * w[1]


def test_conserved_true_and_false():
    report = rf.check(_method([rf.Conserved(imbalance, source="t"), rf.Conserved(product, source="f")]))
    rows = {r.claim: r for r in report.rows}
    assert [r.passed for r in report.rows if "imbalance" in r.claim] == [True, True]
    assert not any(r.passed for r in report.rows if "product" in r.claim)
    assert rows["Conserved(imbalance)"].trace is not None


def test_conserved_is_pathwise_for_sde():
    sde = rf.SDE(lambda t, y, a: jnp.array([-y[1], y[0]]), lambda t, y, a: 0.1 * jnp.array([-y[1], y[0]]),
                 noise="scalar", calculus="stratonovich")
    radius = lambda y, a: y[0] ** 2 + y[1] ** 2  # noqa: E731
    report = rf.check(rf.Method(flow=sde, y0=[[1.0, 0.0]], t1=1.0, dt=0.001, paths=2,
                                claims=[rf.Conserved(radius, drift_tol=1e-4, source="rotation")]))
    assert report.passed, report.table()
    ito = sde.replace(calculus="ito")
    report = rf.check(rf.Method(flow=ito, y0=[[1.0, 0.0]], t1=1.0, dt=0.001, paths=2,
                                claims=[rf.Conserved(radius, drift_tol=1e-4, source="rotation")]))
    assert not report.passed  # the Ito reading grows the radius: its generator is 0.01 r^2


def test_decays_checks_the_rate():
    flow = rf.gradient_flow(two_layer_loss, weight_decay=0.1)
    ok = rf.check(rf.Method(flow=flow, y0=STARTS, t1=5.0, claims=[rf.Decays(imbalance, rate=0.2, source="s")]))
    bad = rf.check(rf.Method(flow=flow, y0=STARTS, t1=5.0, claims=[rf.Decays(imbalance, rate=0.25, source="s")]))
    assert ok.passed and not any(r.passed for r in bad.rows)


def test_monotone_flow_and_map():
    assert rf.check(_method([rf.Monotone(two_layer_loss, source="s"),
                             rf.Monotone(two_layer_loss, on="map", source="s")])).passed
    rising = rf.check(_method([rf.Monotone(two_layer_loss, increasing=True, source="s")]))
    assert not any(r.passed for r in rising.rows)
    big = rf.Method(flow=rf.gradient_flow(two_layer_loss), map=rf.gradient_descent(two_layer_loss, lr=0.45),
                    y0=[[2.0, 1.0]], steps=50, claims=[rf.Monotone(two_layer_loss, on="map", source="s")])
    assert not rf.check(big).passed  # lr * lambda_max > 2: GD oscillates away


def test_stays_in_and_step_ratio():
    near = lambda w, a: 0.05 - jnp.abs(w[0] * w[1] - 1.0)  # noqa: E731
    far = lambda w, a: 0.05 - jnp.abs(w[0] * w[1] - 3.0)  # noqa: E731
    report = rf.check(_method([rf.StaysIn(near, source="s"), rf.StaysIn(far, source="s"),
                               rf.StepRatio(two_layer_loss, 0.0, 1.0, source="s"),
                               rf.StepRatio(two_layer_loss, 0.0, 0.5, source="s")]))
    assert [r.passed for r in report.rows] == [True, False, True, False]


def test_spectrum_equilibria_agrees():
    pts = np.array([[1.0, 1.0], [2.0, 0.5]])
    claims = [
        rf.Spectrum(at=pts, loss=two_layer_loss, expect=lambda w: [0.0, 2 * np.sum(1 / w**2)],
                    printed=lambda w: [0.0, np.sum(1 / w**2)], erratum="factor 2", source="s"),
        rf.Spectrum(at=pts, loss=two_layer_loss, expect=lambda w: [0.0, np.sum(1 / w**2)], source="wrong"),
        rf.EquilibriumSet(guesses=pts * 1.1, on=lambda w, a: w[0] * w[1] - 1, kind="degenerate sink", zero_modes=1,
                          source="s"),
        rf.EquilibriumSet(guesses=pts * 1.1, on=lambda w, a: w[0] * w[1] - 1, kind="saddle", source="wrong"),
        rf.Agrees(map_at=lambda h: rf.gradient_descent(two_layer_loss, lr=h), order=1.0, source="s"),
        rf.Agrees(map_at=lambda h: rf.gradient_descent(two_layer_loss, lr=h), order=2.0, source="wrong"),
    ]
    rows = rf.check(_method(claims)).rows
    assert [r.passed for r in rows] == [True, True, False, True, True, True, False, True, False]
    assert rows[1].note == "erratum: factor 2"


def test_grows_like_and_holds():
    log_growth = rf.ODE(lambda t, y, a: jnp.exp(-y))  # y = log(1 + t)
    claims = [rf.GrowsLike(lambda y, a: y[0], law=np.log1p, source="s"),
              rf.GrowsLike(lambda y, a: y[0], law=np.sqrt, source="wrong"),
              rf.Holds(lambda m: m.t1, lo=0, hi=100, source="s"), rf.Holds(lambda m: -1.0, lo=0, source="wrong")]
    rows = rf.check(rf.Method(flow=log_growth, y0=[0.0], t1=50.0, claims=claims)).rows
    assert [r.passed for r in rows] == [True, False, True, False]


def test_claim_that_cannot_run_fails_with_reason():
    method = rf.Method(flow=rf.gradient_flow(two_layer_loss), y0=STARTS,
                       claims=[rf.Monotone(two_layer_loss, on="map", source="s")])
    (row,) = rf.check(method).rows
    assert not row.passed and "map=None" in row.check


def test_report_table_and_markdown():
    report = rf.check(_method([rf.Conserved(imbalance, source="sec 3.1")]))
    text = report.table()
    assert "Conserved(imbalance)" in text and "2 passed, 0 failed" in text
    assert report.to_markdown().count("\n") == 3


def _rotation_sde(calculus):
    rot = lambda t, y, a: jnp.array([-y[1], y[0]])  # noqa: E731
    return rf.SDE(rot, lambda t, y, a: 0.3 * jnp.array([-y[1], y[0]]), noise="scalar", calculus=calculus)


def test_conserved_on_an_ito_sde_uses_the_generator():
    # d|y|^2 = 0.09 |y|^2 dt in Ito form: the noise is tangent (grad q . G = 0), yet |y|^2 grows
    radius = lambda y, a: y @ y  # noqa: E731
    claims = [rf.Conserved(radius, drift_tol=1e-2, source="rotation")]
    ito = rf.check(rf.Method(flow=_rotation_sde("ito"), y0=[[1.0, 0.0]], t1=1.0, dt=1e-3, paths=4, claims=claims))
    generator, noise, drift = ito.rows
    assert "Ito generator" in generator.check and not generator.passed
    assert noise.passed  # the tangent noise alone cannot tell
    assert not drift.passed
    strat = rf.check(rf.Method(flow=_rotation_sde("stratonovich"), y0=[[1.0, 0.0]], t1=1.0, dt=1e-3, paths=4,
                               claims=claims))
    assert [r.passed for r in strat.rows[:2]] == [True, True]


def test_falsify_gives_every_row_a_verdict():
    ignores_the_method = rf.Holds(measure=lambda m: 1.0, lo=0.5, hi=2.0, name="constant")
    declared = rf.Holds(measure=lambda m: 2.0, lo=1.5, name="algebra", identity="arithmetic on printed constants")
    wrong_rate = rf.Perturbation("lr x 3", {"flow": rf.gradient_flow(two_layer_loss, lr=3.0)})
    method = _method([rf.Conserved(imbalance, source="t"), ignores_the_method, declared],
                     perturbations=[wrong_rate])
    report = rf.check(method, falsify=True)
    verdicts = {(r.claim, r.check): r.verdict for r in report.rows}
    conserved = [v for (claim, _), v in verdicts.items() if claim.startswith("Conserved")]
    assert all(v.startswith("falsified by") and "generic field added" in v for v in conserved)
    assert verdicts[("Holds(constant)", "measured figure")] == "vacuous"
    assert verdicts[("Holds(algebra)", "measured figure")] == "identity: arithmetic on printed constants"
    assert report.vacuous and "vacuous 1" in report.summary()
    # the declared perturbation is tried: a decay rate that depends on lr is caught by it
    decays = rf.Decays(lambda w, a: w @ w, rate=2.0, source="quadratic")
    quad = rf.Method(flow=rf.gradient_flow(lambda w, a: 0.5 * w @ w), y0=[[1.0, 2.0]], t1=1.0, claims=[decays],
                     perturbations=[rf.Perturbation("lr x 3", {"flow": rf.gradient_flow(lambda w, a: 0.5 * w @ w,
                                                                                          lr=3.0)})])
    assert all("lr x 3" in r.verdict for r in rf.check(quad, falsify=True).rows)


def test_erratum_grades_are_checked():
    with pytest.raises(ValueError, match="grade must be one of"):
        rf.Holds(measure=lambda m: 1.0, erratum="x", grade="typo")
    with pytest.raises(ValueError, match="erratum="):
        rf.Holds(measure=lambda m: 1.0, grade="reading")
    rows = rf.check(_method([rf.Holds(measure=lambda m: 1.0, erratum="printed 2", grade="convention")])).rows
    assert rows[0].note == "convention: printed 2"


def test_markdown_cells_are_escaped():
    row = rf.Row("e", "Holds(|x|)", "|q| at points", "eq 1 | eq 2", 1.0, "< 2", True)
    text = rf.Report((row,)).to_markdown()
    body = text.splitlines()[2]
    unescaped = body.replace("\\|", "")
    assert unescaped.count("|") == text.splitlines()[0].count("|")


def _decay_method(claims, **kw):
    """dw/dt = -w (gradient flow of |w|^2 / 2), GD at lr 0.1: closed forms everywhere."""
    quad = lambda w, a: 0.5 * w @ w  # noqa: E731
    return rf.Method(flow=rf.gradient_flow(quad), map=rf.gradient_descent(quad, lr=0.1), y0=[[1.0, 2.0], [-1.0, 0.5]],
                     t1=1.0, steps=10, claims=claims, map_at=lambda h: rf.gradient_descent(quad, lr=h), **kw)


def test_typed_claims_pass_when_true_and_fail_when_false():
    sq = lambda w, a: w @ w  # noqa: E731
    true = [
        rf.AtHorizon(sq, predict=lambda y0, a: np.exp(-2.0) * (y0 @ y0), tol=1e-7),
        rf.AtHorizon(sq, predict=lambda y0, a: 0.9 ** 20 * (y0 @ y0), on="map", tol=1e-12),
        rf.Formula(lambda w, a: -2 * w @ w, rate_of=sq),
        rf.Formula(lambda w, a: -w, field=True),
        rf.Formula(lambda w, a: 0.9 * w, step=True),
        rf.OrderFit(lambda m, h: abs(float(rf.iterate(m.map_at(h), m.start(0), round(1 / h)).flat[-1, 0])
                                     - np.exp(-1.0)), order=1.0),
        rf.Refuted(lambda w, a: -w @ w, correct=lambda w, a: -2 * w @ w),
    ]
    false = [
        rf.AtHorizon(sq, predict=lambda y0, a: np.exp(-1.0) * (y0 @ y0)),
        rf.Formula(lambda w, a: -w @ w, rate_of=sq),
        rf.Formula(lambda w, a: -2 * w, field=True),
        rf.OrderFit(lambda m, h: h ** 2, order=1.0),
    ]
    report = rf.check(_decay_method(true + false))
    rows = report.rows
    assert [r.passed for r in rows[:7]] == [True] * 7, rf.Report(rows[:7])
    assert not any(r.passed for r in rows[7:])
    assert all(r.trace is not None for r in rows)
    # every row of a true claim but the refutation is caught by a perturbation
    verdicts = [r.verdict for r in rf.check(_decay_method(true), falsify=True).rows]
    assert all(v.startswith("falsified") for v in verdicts[:6]), verdicts
    assert verdicts[6].startswith("identity")


def test_same_limit_is_start_independent_only_when_it_is():
    quad = lambda w, a: 0.5 * jnp.sum((w - 1.0) ** 2)  # noqa: E731
    method = rf.Method(flow=rf.gradient_flow(quad), y0=[[0.0, 3.0], [2.0, -1.0]], t1=30.0, claims=[
        rf.SameLimit(lambda w, a: w, limit=[1.0, 1.0]), rf.SameLimit(lambda w, a: w[0] - w[1] + 0 * w @ w)])
    rows = rf.check(method).rows
    assert [r.passed for r in rows] == [True, True, True]
    shear = rf.ODE(lambda t, w, a: jnp.array([0.0, -w[1]]))  # w[0] stays where it starts
    rows = rf.check(rf.Method(flow=shear, y0=[[0.0, 3.0], [2.0, -1.0]], t1=30.0,
                              claims=[rf.SameLimit(lambda w, a: w)])).rows
    assert not rows[0].passed
