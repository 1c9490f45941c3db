"""Renamed keywords and attributes that keep working for a while, with a DeprecationWarning.

Why one helper: a rename (``alpha`` -> ``exponent`` / ``beta``, ``state`` -> ``state_dict``)
must not break a user's script or a saved configuration on the day it lands; every old name
is mapped to its new one the same way, warns once per call site and refuses both at once.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["renamed_attribute", "renamed_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: ``@renamed_keywords(alpha="exponent")`` lets callers still pass ``alpha=``;
    it is handed to the function as ``exponent=`` with a ``DeprecationWarning``. Giving both
    names raises ``TypeError``. The signature shown by ``help()`` is the new one.

    >>> @renamed_keywords(old="new")
    ... def f(new=1):
    ...     return new
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(old=2), caught[0].category.__name__
    (2, 'DeprecationWarning')
    """

    def wrap(fn: F) -> F:
        where = fn.__qualname__.replace(".__init__", "")

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{where}() got both {new!r} and its deprecated name {old!r}")
                warnings.warn(
                    f"{where}(): the keyword {old!r} is deprecated, use {new!r}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def renamed_attribute(old: str, new: str) -> property:
    """A read-only property ``old`` that returns attribute ``new`` with a DeprecationWarning.

    >>> class Mixer:
    ...     beta = 2.0
    ...     alpha = renamed_attribute("alpha", "beta")
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     Mixer().alpha
    2.0
    """

    def get(self):
        warnings.warn(
            f"{type(self).__name__}.{old} is deprecated, use .{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of :attr:`{new}`.")
