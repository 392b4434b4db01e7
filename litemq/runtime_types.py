"""What litemq's class statements need of ``typing`` at run time, without importing typing.

Importing typing costs about 5 ms here (it imports re and builds hundreds of aliases): a seventh of a process that
starts, publishes one message and exits. So the modules such a process loads name their types for mypy only (their
annotations are strings), and take the few names that a class statement evaluates from here::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple, Optional
    else:
        from .runtime_types import NamedTuple

mypy reads typing's names (it takes any ``TYPE_CHECKING`` as true); at run time these make the same classes, except
that ``typing.get_type_hints`` cannot resolve their annotations.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NAMEDTUPLE_OWN = frozenset({"__module__", "__qualname__", "__annotations__", "__orig_bases__"})


class _NamedTupleMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        if not bases:
            return super().__new__(mcls, name, bases, namespace)
        fields = list(namespace.get("__annotations__", {}))
        defaults = [namespace[field] for field in fields if field in namespace]
        if any(field in namespace for field in fields[:len(fields) - len(defaults)]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        made = collections.namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])  # type: ignore[misc]
        made.__qualname__ = namespace.get("__qualname__", name)
        made.__annotations__ = dict(namespace.get("__annotations__", {}))
        for key, value in namespace.items():
            if key not in _NAMEDTUPLE_OWN and key not in fields:
                setattr(made, key, value)
        return made


class NamedTuple(metaclass=_NamedTupleMeta):
    """``class Row(NamedTuple): field: type = default`` makes a ``collections.namedtuple`` with the class's methods,
    as typing.NamedTuple does."""


class Protocol:
    """A structural type, for mypy: at run time a plain base (litemq never checks a protocol with isinstance)."""

    __slots__ = ()


class Generic:
    """``Generic[T]`` as a base: at run time a plain one."""

    __slots__ = ()

    def __class_getitem__(cls, parameters: object) -> type:
        return cls


def TypeVar(name: str, *constraints: object, bound: object = None) -> str:
    """A type variable, for mypy; at run time its name."""
    return name
