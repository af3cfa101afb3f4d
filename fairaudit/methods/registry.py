"""The method registry: every cohort-discovery method registers itself here, once, by name.

A new method is one module in ``fairaudit/methods/`` whose class is decorated with
:func:`register`; the CLI, the options, the reports and the synthetic generator read the names
from here, so nothing else lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from fairaudit.methods.base import CohortMethod

_REGISTRY: dict[str, type[CohortMethod]] = {}

M = TypeVar("M", bound=type)


def register(cls: M) -> M:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute 'name' to be registered")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two methods are registered as {name!r}")
    _REGISTRY[name] = cls
    return cls


def _load() -> None:
    """Import every module of the methods package so that each registers itself."""
    import importlib
    import pkgutil

    import fairaudit.methods as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name not in ("base", "registry"):
            importlib.import_module(f"fairaudit.methods.{module.name}")


def method_classes() -> dict[str, type[CohortMethod]]:
    """Registered methods by name, in report order (``display_order``, then name)."""
    _load()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].display_order, item[0])))


def method_names() -> tuple[str, ...]:
    """Every registered method name, in report order."""
    return tuple(method_classes())


def discovery_names() -> tuple[str, ...]:
    """Methods run by default when the log has their columns (all but those needing a request)."""
    return tuple(name for name, cls in method_classes().items() if cls.runs_by_default)


def method_class(name: str) -> type[CohortMethod]:
    """The class registered as ``name``; KeyError when there is none."""
    return method_classes()[name]
