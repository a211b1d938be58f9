r"""Checks shared by the public boundaries: callables' signatures, numbers, times, tolerances, args.

Every check raises `TypeError` (wrong kind of thing) or `ValueError` (right kind, wrong value)
with a message that names the argument and says how to fix it.  They run once per call (or once
per system, for signatures), never inside a compiled loop.

The one callable convention, as the messages show it:

* vector field, drift  ``f(t, y, args)``;  diffusion ``g(t, y, args)``
* map step             ``step(k, y, args)``, stochastic ``step(k, y, args, key)``
* quantity             ``q(y, args)`` (loss, invariant, observable)
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import jax
import numpy as np

#: What each kind of callable must look like, for messages.
FIELD = "f(t, y, args)"
DIFFUSION = "g(t, y, args)"
STEP = "step(k, y, args)"
STOCHASTIC_STEP = "step(k, y, args, key)"
QUANTITY = "q(y, args)"
LOSS = "loss(w, args)"
SAMPLE_LOSS = "loss(w, batch, args)"
#: Adaptive ODE solvers need ``MIN_RTOL <= rtol < MAX_RTOL``: below float64's resolution no
#: step can meet the tolerance; at 1 (100 % relative error) there is no accuracy left.
MIN_RTOL = float(np.finfo(np.float64).eps)
MAX_RTOL = 1.0
#: Signatures already inspected (``inspect.signature`` costs tens of microseconds, an equinox
#: module's hundreds), keyed by the callable or, for instances of a class, by the class.
_SIGNATURES: dict = {}
_SIGNATURE_CACHE_SIZE = 4096


# ----------------------------------------------------------------------------- callables


def _inspect(fn):
    """``(required, most positional (inf with *args), names, required keyword-only)`` or None
    when the callable cannot be inspected (a builtin, a C extension)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    required, positional, var, names, keyword = 0, 0, False, [], []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            names.append(p.name)
            required += p.default is p.empty
        elif p.kind is p.VAR_POSITIONAL:
            var = True
            names.append("*" + p.name)
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            keyword.append(p.name)
    return required, math.inf if var else positional, tuple(names), tuple(keyword)


def _cache_key(fn):
    try:
        hash(fn)
        return fn
    except TypeError:  # an instance holding arrays (an equinox module, a dataclass of data)
        cls = type(fn)
        if "__signature__" in getattr(fn, "__dict__", {}) or hasattr(fn, "__wrapped__"):
            return None
        return cls if isinstance(getattr(cls, "__call__", None), type(_inspect)) else None


def parameters(fn):
    """`_inspect` of ``fn``, cached."""
    key = _cache_key(fn)
    if key is None:
        return _inspect(fn)
    try:
        return _SIGNATURES[key]
    except KeyError:
        pass
    if len(_SIGNATURES) >= _SIGNATURE_CACHE_SIZE:
        _SIGNATURES.clear()
    found = _SIGNATURES[key] = _inspect(fn)
    return found


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@functools.lru_cache(maxsize=64)
def _arguments(convention):
    """``("t, y, args", 3)`` of ``"f(t, y, args)"``."""
    wanted = convention[convention.index("(") + 1: convention.index(")")]
    return wanted, wanted.count(",") + 1


def check_callable(fn, argname, convention, hint=""):
    """``fn`` is callable with the arguments of ``convention`` (e.g. ``"f(t, y, args)"``), positionally.

    Defaults, ``*args``, ``functools.partial``, jitted functions and equinox modules are
    understood; a callable whose signature cannot be inspected is accepted as it is."""
    if not callable(fn):
        raise TypeError(f"{argname} must be a callable {convention}, got {type(fn).__name__} {_short(fn)}")
    found = parameters(fn)
    if found is None:
        return fn
    required, most, names, keyword = found
    wanted, n = _arguments(convention)
    if keyword:
        raise TypeError(f"{argname} must be {convention}; got a callable with required keyword-only parameter(s) "
                        f"{', '.join(keyword)}: give them defaults, or make them positional")
    if required <= n <= most:
        return fn
    got = f"({', '.join(names)})" if names else "(no parameters)"
    raise TypeError(f"{argname} must be {convention}, called with {n} arguments ({wanted}); got a callable of "
                    f"{_plural(len([x for x in names if not x.startswith('*')]), 'parameter')} {got}: write it as "
                    f"`def {convention}: ...` (unused arguments may be ignored){hint}")


# ----------------------------------------------------------------------------- numbers and times


def _short(x, width=40):
    text = repr(x)
    return text if len(text) <= width else text[: width - 3] + "..."


def real_number(x, name, example="1.0") -> float:
    """``x`` as a float: an int, float, or a 0-d real numpy/JAX array (never a bool or a string)."""
    if type(x) is float or type(x) is int:  # the common case, fast
        return float(x)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got the bool {x!r}; pass e.g. {name}={example}")
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (np.ndarray, jax.Array)) and np.ndim(x) == 0 and np.asarray(x).dtype.kind in "iuf":
        return float(x)
    what = "complex number" if isinstance(x, complex) or getattr(getattr(x, "dtype", None), "kind", "") == "c" \
        else type(x).__name__
    raise TypeError(f"{name} must be a real number (int or float), got {what} {_short(x)}; pass e.g. {name}={example}")


def finite_number(x, name, example="1.0") -> float:
    x = real_number(x, name, example)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}; pass e.g. {name}={example}")
    return x


def positive_number(x, name, example="1.0") -> float:
    x = finite_number(x, name, example)
    if not x > 0:
        raise ValueError(f"{name} must be positive, got {x}; pass e.g. {name}={example}")
    return x


def positive_int(n, name, least=1, example=None) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(n).__name__} {_short(n)}"
                        + (f"; pass e.g. {name}={example}" if example else ""))
    if n < least:
        raise ValueError(f"{name} must be at least {least}, got {n}" + (f"; pass e.g. {name}={example}" if example else ""))
    return int(n)


def flag(x, name):
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(x).__name__} {_short(x)}")
    return bool(x)


def tolerances(rtol, atol):
    """Adaptive solvers' ``(rtol, atol)`` as floats: ``MIN_RTOL <= rtol < MAX_RTOL``, ``atol > 0``."""
    rtol = positive_number(rtol, "rtol", "1e-8")
    atol = positive_number(atol, "atol", "1e-10")
    if rtol >= MAX_RTOL:
        raise ValueError(f"rtol={rtol:g} allows a relative error of {100 * rtol:.0f}%, i.e. no accuracy; adaptive "
                         f"solvers need rtol < {MAX_RTOL:g}: pass e.g. rtol=1e-8 (and atol=1e-10)")
    if rtol < MIN_RTOL:
        raise ValueError(f"rtol={rtol:g} is below float64 resolution ({MIN_RTOL:.2g}): no step can meet it; pass "
                         f"rtol >= {MIN_RTOL:.2g}, e.g. rtol=1e-12")
    return rtol, atol


def times(ts, name="ts", example="np.linspace(t0, t1, 11)"):
    """A 1-D float64 array of the real numbers ``ts`` (a 0-d value is one time)."""
    if isinstance(ts, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of times (numbers), got the string {_short(ts)}; pass e.g. "
                        f"{name}={example}")
    try:
        array = np.asarray(ts)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a 1-D sequence of times (numbers), got {_short(ts)} ({err})") from None
    if array.dtype.kind not in "iuf":
        what = {"b": "bools", "c": "complex numbers", "U": "strings", "S": "bytes"}.get(array.dtype.kind, "objects")
        raise TypeError(f"{name} must hold real numbers, got {what} ({_short(ts)}); pass e.g. {name}={example}")
    if array.ndim > 1:
        raise ValueError(f"{name} must be 1-D (one time per save), got shape {array.shape}; pass a flat sequence, "
                         f"e.g. np.ravel({name})")
    return array.astype(np.float64).ravel()


# ----------------------------------------------------------------------------- parameters


def _is_number_leaf(leaf) -> bool:
    if isinstance(leaf, (numbers.Number, np.bool_)):
        return True
    if isinstance(leaf, (np.ndarray, np.generic)):
        return leaf.dtype.kind in "biufc"
    return isinstance(leaf, jax.Array)


def _bad_leaf(name, path, leaf):
    where = f"{name}{jax.tree_util.keystr(path)}"
    return TypeError(f"{name} must be a pytree of arrays and numbers (it is an input of the compiled program, like y); "
                     f"{where} is {type(leaf).__name__} {_short(leaf)}: pass numbers, and keep text or other settings "
                     f"out of {name} (close over them in the function, or give them to the factory that builds the "
                     f"system)")


def args_pytree(args, name="args", finite=False):
    """``args`` is a pytree whose leaves are arrays or numbers (they become inputs of compiled
    programs); text or other objects are refused with the reason.  With ``finite``, its concrete
    (not traced) float leaves must also be finite."""
    if args is None:
        return None
    for path, leaf in jax.tree_util.tree_flatten_with_path(args)[0]:
        if not _is_number_leaf(leaf):
            raise _bad_leaf(name, path, leaf)
        if not finite or isinstance(leaf, (bool, int, np.bool_, jax.core.Tracer)):
            continue
        value = np.asarray(leaf)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite; {name}{jax.tree_util.keystr(path)} holds NaN or inf")
    return args


def finite_args(args, name="args"):
    """`args_pytree` with finite float leaves."""
    return args_pytree(args, name, finite=True)


def names(names):
    """``None`` or a tuple of distinct non-empty strings."""
    if names is None:
        return None
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"names must be a sequence of strings such as ('w1', 'w2'), got {_short(names)}")
    names = tuple(names)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"names must be strings such as ('w1', 'w2'); got {type(bad[0]).__name__} {_short(bad[0])} "
                        f"in {_short(names, 60)}")
    if not names:
        raise ValueError("names is empty; pass one name per coordinate, e.g. names=('w1', 'w2'), or leave it None")
    if any(not n.strip() for n in names):
        raise ValueError(f"names must be non-empty strings, got {names!r}; name every coordinate, e.g. ('w1', 'w2')")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names!r}")
    return names


# ----------------------------------------------------------------------------- outputs of callables

#: JAX's errors for numpy calls, ``float()``/``int()`` or ``if`` on traced values.
TRACER_ERRORS = tuple(getattr(jax.errors, name) for name in (
    "TracerArrayConversionError", "TracerBoolConversionError", "TracerIntegerConversionError",
    "ConcretizationTypeError") if hasattr(jax.errors, name))


def first_line(err) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def trace(call, y, label, structure):
    """``jax.eval_shape(call, y)``, with the user's errors re-raised naming the callable (``label``,
    e.g. ``"the vector_field f(t, y, args)"``) and the fix."""
    try:
        return jax.eval_shape(call, y)
    except TRACER_ERRORS as err:
        raise TypeError(f"{label} uses numpy or Python control flow on traced values ({first_line(err)}); write it "
                        f"with jax.numpy (jnp.sin, jnp.where, jax.lax.cond instead of np.sin, if), so that regflow "
                        f"can compile and differentiate it") from err
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, ArithmeticError) as err:
        kind = TypeError if isinstance(err, (TypeError, AttributeError, KeyError)) else ValueError
        raise kind(f"calling {label} on a state like y ({structure.describe()}) failed with {first_line(err)}; "
                   f"check that it fits the state's shape and the system's args") from err


def check_returned(out, structure, name, label, *, exact_dtype=False):
    """``out`` (values or ``ShapeDtypeStruct``) of the callable ``name`` (described by ``label``)
    is like the state: same structure and shapes, real numbers (float64 exactly with
    ``exact_dtype``: a map's step feeds the next step)."""
    from . import _tree

    if out is None:
        raise TypeError(f"{label} returned None; it must return an array like y (is a `return` missing?)")
    if isinstance(out, (list, tuple)) and structure.treedef != jax.tree_util.tree_structure(out) and all(
            np.ndim(leaf) == 0 for leaf in jax.tree_util.tree_leaves(out)):
        raise TypeError(f"{label} returns a {type(out).__name__} of {_plural(len(out), 'number')}; return an array "
                        f"like y (shape {structure.describe()}), e.g. jnp.array([...]) or jnp.stack([...])")
    _tree.check_like(structure, out, name)
    for leaf in jax.tree_util.tree_leaves(out):
        dtype = np.dtype(leaf.dtype)
        if dtype.kind == "c":
            raise TypeError(f"{label} returns complex values ({dtype}); regflow states are real: return real arrays "
                            f"(e.g. jnp.real(...)), or split a complex state into real and imaginary parts")
        if dtype.kind not in "iuf":
            raise TypeError(f"{label} returns {dtype} values; it must return real numbers like y")
        if exact_dtype and dtype != np.float64:
            raise TypeError(f"{label} returns {dtype} values for a float64 state; return float64 (regflow computes "
                            f"in float64), e.g. jnp.asarray(..., jnp.float64)")


#: Output checks already passed: (kind, callables' static part, state structure, args signature).
_CHECKED: set = set()


def args_signature(args):
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf).__name__))) for leaf in leaves)


def check_outputs(system, structure, t, args):
    """The system's callables, evaluated abstractly at ``(t, y, args)``, return what the state
    needs (`check_returned`; a ``"general"`` diffusion each leaf's shape + ``(m,)``, ``m >= 1``).
    Traced once per structure (cached)."""
    from ._compiled import split
    from ._system import ODE, SDE, Map

    if isinstance(system, Map):
        fns = (system.step,)
    elif isinstance(system, ODE):
        fns = (system.vector_field,)
    else:
        fns = (system.drift, system.diffusion)
    key = (type(system), getattr(system, "noise", None), getattr(system, "stochastic", None), split(fns)[1],
           structure, args_signature(args))
    try:
        if key in _CHECKED:
            return
    except TypeError:  # an unhashable static part: check every time
        key = None
    y = structure.abstract()
    if isinstance(system, Map):
        convention = STOCHASTIC_STEP if system.stochastic else STEP
        call = (lambda y: system.step(0, y, args, jax.random.PRNGKey(0))) if system.stochastic else (
            lambda y: system.step(0, y, args))
        label = f"the step {convention}"
        check_returned(trace(call, y, label, structure), structure, "step", label, exact_dtype=True)
    else:
        name = "vector_field" if isinstance(system, ODE) else "drift"
        label = f"the {name} {FIELD}"
        check_returned(trace(lambda y: system.drift(t, y, args), y, label, structure), structure, name, label)
    if isinstance(system, SDE):
        label = f"the diffusion {DIFFUSION}"
        g = trace(lambda y: system.diffusion(t, y, args), y, label, structure)
        if system.noise == "general":
            _check_general(g, structure)
        else:
            try:
                check_returned(g, structure, "diffusion", label)
            except ValueError as err:
                raise ValueError(f"{err} (noise={system.noise!r}: the diffusion has the state's shape)") from None
    if key is not None:
        _CHECKED.add(key)


def _check_general(g, structure):
    leaves = jax.tree_util.tree_leaves(g)
    if g is None or not leaves:
        raise TypeError("the diffusion g(t, y, args) returned None; with noise='general' it must return each leaf's "
                        "shape + (m,), e.g. (dim, m) for a vector state")
    width = {tuple(leaf.shape[-1:]) for leaf in leaves}
    if len(width) != 1 or jax.tree_util.tree_structure(g) != structure.treedef or any(
            tuple(leaf.shape[:-1]) != s for leaf, s in zip(leaves, structure.shapes)):
        raise ValueError(f"the diffusion returns shapes {[tuple(leaf.shape) for leaf in leaves]} but noise='general' "
                         f"needs each leaf's shape + (m,), e.g. ({structure.size}, m) for a vector state of dimension "
                         f"{structure.size}")
    if width == {(0,)}:
        raise ValueError(f"the diffusion returns shapes {[tuple(leaf.shape) for leaf in leaves]}: m = 0 Brownian "
                         f"motions; noise='general' needs m >= 1 columns (shape ({structure.size}, m)); for no noise "
                         f"use an rf.ODE")
    for leaf in leaves:
        if np.dtype(leaf.dtype).kind not in "iuf":
            raise TypeError(f"the diffusion g(t, y, args) returns {np.dtype(leaf.dtype)} values; it must return real "
                            f"numbers")


def check_quantity(q, structure, args, name="save"):
    """A quantity ``q(y, args)`` of the state: its signature and real values; returns its
    abstract value (``ShapeDtypeStruct`` pytree)."""
    check_callable(q, name, QUANTITY)
    out = trace(lambda y: q(y, args), structure.abstract(), f"{name} {QUANTITY}", structure)
    leaves = jax.tree_util.tree_leaves(out)
    if out is None or not leaves:
        raise TypeError(f"{name} {QUANTITY} returned None; it must return a scalar, an array or a pytree of them")
    for leaf in leaves:
        if np.dtype(leaf.dtype).kind not in "iuf":
            raise TypeError(f"{name} {QUANTITY} returns {np.dtype(leaf.dtype)} values; it must return real numbers")
    return out
