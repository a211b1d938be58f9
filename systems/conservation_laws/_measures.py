r"""Measures shared by the conservation-law entries: counts of laws and spans of the laws found,
each on the method's own flow (so a perturbed flow reaches them)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import regflow as rf

#: Random data sets (besides the flow's own) whose fields generate the Lie algebra of a count: enough that
#: its rank is reached (too few give a rank from below, a count from above).
DATASETS = 12
#: Random data sets (besides the flow's own) of the laws found: each point gives one equation per data
#: set, and few data sets keep the operator well conditioned (residuals ~1e-15 against ~1e-11 with 12).
LAW_DATASETS = 3
#: Random parameter points (besides one start) where the Lie algebra's rank is taken.
COUNT_POINTS = 2
#: Principal angle (radians) reported when the number of laws found differs from the known one.
RIGHT_ANGLE = np.pi / 2
#: Largest principal angle between the laws found and the known ones.
ANGLE_TOL = 1e-6


def law_count(make_params, make_data, expect, label, datasets=DATASETS):
    r"""A `rf.Holds` measure: :math:`D - \dim\operatorname{Lie}` of the method's flow (its
    field on ``make_data()`` and ``datasets`` random data sets of that shape) at ``make_params()``
    and `COUNT_POINTS` random points; its trace is the rank after each bracket level."""

    def measure(method):
        count = rf.count_conservation_laws(method.flow, make_params(), args=make_data(), datasets=datasets,
                                           points=COUNT_POINTS)
        levels = np.arange(1, len(count.levels) + 1)
        trace = rf.Trace(levels, count.dim - np.asarray(count.levels), "bracket level", "D - rank so far",
                         "points", float(expect))
        return count.laws, trace

    measure.__name__ = f"laws_{label}"
    return measure


#: The last laws found by `span_angle`, per flow: ``{id(flow): (flow, datasets, laws)}`` (rows of one
#: check share them; the flow is kept so that a reused id cannot match).
_FOUND: dict = {}


def _laws_on(flow, params, datasets):
    hit = _FOUND.get(id(flow))
    if hit is not None and hit[0] is flow and hit[1] == datasets:
        return hit[2]
    laws = rf.conservation_laws(flow, params, datasets=datasets)
    _FOUND.clear()
    _FOUND[id(flow)] = (flow, datasets, laws)
    return laws


def span_angle(make_params, known, label, datasets=LAW_DATASETS, contains=False):
    r"""A `rf.Holds` measure: the largest principal angle between the degree-2 laws that
    `rf.conservation_laws` finds on the method's flow (over ``datasets`` random data sets) and
    the ``known`` quantities.  Without ``contains`` the two sets must have the same dimension
    (else `RIGHT_ANGLE`): the laws found are exactly the known ones; with it, the known ones
    lie in the span of those found."""

    def measure(method):
        params = make_params()
        laws = _laws_on(method.flow, params, datasets)
        if not laws or (not contains and len(laws) != len(known)) or len(laws) < len(known):
            angles = np.full(len(known), RIGHT_ANGLE)
        else:
            angles = rf.principal_angles(laws, known, params)
        index = np.arange(len(angles))
        return float(np.max(angles)), rf.Trace(index, angles, "principal angle", f"radians ({len(laws)} laws found)",
                                               "points", ANGLE_TOL)

    measure.__name__ = f"span_{label}"
    return measure


def found_laws(flow, params, datasets=LAW_DATASETS):
    """The degree-2 laws of ``flow`` for every data set (at build time, for `rf.Conserved` rows)."""
    return rf.conservation_laws(flow, params, datasets=datasets)


class Laws:
    """The laws found as one vector quantity ``q(y, args) -> (k,)`` (one `rf.Conserved` checks
    every entry with one compiled program)."""

    def __init__(self, laws):
        self.laws = tuple(laws)
        self.__name__ = f"the {len(self.laws)} law{'s' if len(self.laws) != 1 else ''} found"

    def __call__(self, y, args=None):
        return jnp.stack([law(y, args) for law in self.laws])


def conserved_rows(laws, source):
    """`rf.Conserved` of every law found (pointwise and along the method's runs; the worst law counts)."""
    return [rf.Conserved(Laws(laws), source=source)]
