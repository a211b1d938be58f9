r"""A fingerprint of a callable's code and the values it closes over: equal fingerprints, same
computation (as far as the code can tell).

`fingerprint(fn)` is a sha256 over

* the code objects: bytecode, constants (nested code objects recursively), names, argument
  layout; not line numbers, so moving a function or editing comments keeps it;
* the qualified name, the defaults, the values in the closure cells;
* the module-level names the code reads: numbers, strings, arrays and containers of them by
  value, the user's own functions and classes by their code (recursively), modules and
  library functions by name;
* for ``functools.partial``, bound methods, decorated functions (``__wrapped__``),
  dataclasses and the user's own objects: what they are built from; other objects by their
  pickle.

Library code (the standard library, installed packages, regflow itself) counts by name, not by
content.  A value that is read but not encoded (say a file on disk) is not seen: pass
``recompute=True`` to `sweep` when such a thing changed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pickle
import struct
import sys
import types

import numpy as np

#: Containers nested deeper than this count by type only (guards against huge object graphs).
MAX_DEPTH = 40
#: Pickle protocol of library objects' encoding (fixed, so the fingerprint is too).
PICKLE_PROTOCOL = 4
_LIBRARY_ROOTS = {"regflow", "builtins"} | set(getattr(sys, "stdlib_module_names", ()))
_PACKAGE_DIRS = ("site-packages", "dist-packages")


def fingerprint(obj) -> str:
    """Hex sha256 of a callable (or value) as described in the module docstring.

    Example
    -------
    >>> fingerprint({"lr": [0.1, 0.2]}) == fingerprint({"lr": [0.1, 0.2]})
    True
    >>> fingerprint({"lr": [0.1, 0.2]}) == fingerprint({"lr": [0.1, 0.3]})
    False
    """
    encoder = _Encoder()
    encoder.feed(obj, 0)
    return encoder.sha.hexdigest()


def qualname(fn) -> str:
    """``module.qualname`` of a callable, for messages and metadata."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


@functools.lru_cache(maxsize=1024)
def _is_library_module(module: str | None) -> bool:
    if not module or module == "__main__":
        return False
    if module.split(".")[0] in _LIBRARY_ROOTS:
        return True
    file = getattr(sys.modules.get(module), "__file__", None) or ""
    return any(part in file for part in _PACKAGE_DIRS)


class _Encoder:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.seen: dict[int, int] = {}
        self.keep = []  # objects whose ids are in seen stay alive

    def tag(self, text: str):
        data = text.encode("utf-8", "surrogatepass")
        self.sha.update(struct.pack("<Q", len(data)) + data)

    def raw(self, data: bytes):
        self.sha.update(struct.pack("<Q", len(data)) + data)

    def sub(self, obj, depth) -> bytes:
        """The encoding of ``obj`` on its own (for sorting unordered containers)."""
        inner = _Encoder()
        inner.seen, inner.keep = self.seen, self.keep
        inner.feed(obj, depth)
        return inner.sha.digest()

    def once(self, obj) -> bool:
        """Record ``obj``; False (and a back-reference written) if it was seen before."""
        key = id(obj)
        if key in self.seen:
            self.tag(f"ref:{self.seen[key]}")
            return False
        self.seen[key] = len(self.seen)
        self.keep.append(obj)
        return True

    def feed(self, obj, depth):  # noqa: C901  (one branch per kind of value)
        if depth > MAX_DEPTH:
            self.tag(f"deep:{_name(type(obj))}")
        elif obj is None or isinstance(obj, (bool, int, float, complex, str)):
            self.tag(f"{type(obj).__name__}:{obj!r}")
        elif isinstance(obj, (bytes, bytearray)):
            self.tag("bytes")
            self.raw(bytes(obj))
        elif isinstance(obj, np.generic) or _is_array(obj):
            self.array(obj, depth)
        elif isinstance(obj, types.CodeType):
            self.code(obj, depth)
        elif isinstance(obj, types.ModuleType):
            self.tag(f"module:{obj.__name__}")
        elif not self.once(obj):
            return
        elif isinstance(obj, (list, tuple)):
            self.tag(f"{_name(type(obj))}:{len(obj)}")
            for item in obj:
                self.feed(item, depth + 1)
        elif isinstance(obj, dict):
            self.tag(f"dict:{len(obj)}")
            for item in sorted(self.sub(item, depth + 1) for item in obj.items()):
                self.raw(item)
        elif isinstance(obj, (set, frozenset)):
            self.tag(f"set:{len(obj)}")
            for item in sorted(self.sub(item, depth + 1) for item in obj):
                self.raw(item)
        elif isinstance(obj, types.FunctionType):
            self.function(obj, depth)
        elif isinstance(obj, functools.partial):
            self.tag("partial")
            for part in (obj.func, obj.args, obj.keywords):
                self.feed(part, depth + 1)
        elif isinstance(obj, types.MethodType):
            self.tag("method")
            self.feed(obj.__func__, depth + 1)
            self.feed(obj.__self__, depth + 1)
        elif isinstance(obj, type):
            self.cls(obj, depth)
        elif isinstance(obj, (staticmethod, classmethod)):
            self.tag(type(obj).__name__)
            self.feed(obj.__func__, depth + 1)
        elif isinstance(obj, property):
            self.tag("property")
            for part in (obj.fget, obj.fset, obj.fdel):
                self.feed(part, depth + 1)
        elif callable(obj) and hasattr(obj, "__wrapped__"):  # decorators such as jax.jit
            self.tag(f"wrapped:{_name(type(obj))}")
            self.feed(obj.__wrapped__, depth + 1)
        elif isinstance(obj, (types.BuiltinFunctionType, np.ufunc)):
            self.tag(f"builtin:{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', obj.__name__)}")
        else:
            self.instance(obj, depth)

    def array(self, obj, depth):
        array = np.asarray(obj)
        self.tag(f"array:{array.dtype.str}:{array.shape}")
        if array.dtype.hasobject:
            self.feed(array.tolist(), depth + 1)
        else:  # the buffer itself: no copy of a large data set
            data = memoryview(np.ascontiguousarray(array)).cast("B")
            self.sha.update(struct.pack("<Q", data.nbytes))
            self.sha.update(data)

    def code(self, code, depth, doc=None):
        consts = code.co_consts
        if doc is not None and consts and consts[0] is doc:  # the docstring is not code: as if absent
            consts = (None, *consts[1:])
        self.tag(f"code:{code.co_name}:{code.co_argcount}:{code.co_posonlyargcount}:{code.co_kwonlyargcount}:"
                 f"{code.co_flags}")
        self.raw(code.co_code)
        for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
            self.tag(",".join(names))
        self.tag(f"consts:{len(consts)}")
        for const in consts:
            self.feed(const, depth + 1)

    def function(self, fn, depth):
        self.tag(f"function:{fn.__module__}.{fn.__qualname__}")
        if _is_library_module(fn.__module__):
            return
        self.code(fn.__code__, depth, doc=fn.__doc__)
        self.feed(fn.__defaults__, depth + 1)
        self.feed(fn.__kwdefaults__, depth + 1)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                self.tag("empty-cell")
                continue
            self.feed(value, depth + 1)
        namespace = fn.__globals__
        for name in sorted(_global_names(fn.__code__)):
            if name in namespace:
                self.tag(f"global:{name}")
                self.feed(namespace[name], depth + 1)

    def cls(self, cls, depth):
        self.tag(f"class:{_name(cls)}")
        if _is_library_module(cls.__module__):
            return
        for name, value in sorted(vars(cls).items()):
            if name.startswith("__") and name.endswith("__") and not isinstance(value, types.FunctionType):
                continue  # __dict__, __module__, __weakref__ ...
            self.tag(f"attr:{name}")
            self.feed(value, depth + 1)

    def instance(self, obj, depth):
        try:
            self._instance(obj, depth)
        except Exception:  # noqa: BLE001  (an object that will not be inspected counts by its type)
            self.tag(f"unreadable:{_name(type(obj))}")

    def _instance(self, obj, depth):
        cls = type(obj)
        self.tag(f"object:{_name(cls)}")
        user = not _is_library_module(cls.__module__)
        if user:
            self.cls(cls, depth + 1)
        if dataclasses.is_dataclass(obj):
            for field in dataclasses.fields(obj):
                self.tag(f"field:{field.name}")
                self.feed(getattr(obj, field.name, None), depth + 1)
        elif user and isinstance(getattr(obj, "__dict__", None), dict):
            self.feed(dict(vars(obj)), depth + 1)
        else:  # a library object: its pickle (deterministic for data), else its type alone
            try:
                self.raw(pickle.dumps(obj, protocol=PICKLE_PROTOCOL))
            except Exception:  # noqa: BLE001  (unpicklable objects: locks, generators, handles ...)
                self.tag("unpicklable")


def _name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_array(obj) -> bool:
    """numpy arrays and array types that convert to them (jax arrays); not tracers."""
    if isinstance(obj, np.ndarray):
        return True
    module = type(obj).__module__ or ""
    return module.startswith("jax") and hasattr(obj, "__array__") and hasattr(obj, "dtype")


def _global_names(code) -> set[str]:
    """Names a code object (and the code nested in it) reads as globals or attributes."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
