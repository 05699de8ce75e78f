"""Every public name of pytest_chaos says what it is: modules, classes, functions and the
public methods and properties of public classes."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

from tests.house.imports import module_names

# Modules whose import has side effects or needs what tests do not have.
SKIPPED_MODULES = {"pytest_chaos.__main__"}


def public_modules() -> list[ModuleType]:
    return [
        importlib.import_module(name)
        for name in module_names()
        if name not in SKIPPED_MODULES and not any(p.startswith("_") for p in name.split("."))
    ]


def _own(module: ModuleType, value: object) -> bool:
    return getattr(value, "__module__", None) == module.__name__


def undocumented() -> list[str]:
    missing: list[str] = []
    for module in public_modules():
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        for name, value in vars(module).items():
            if name.startswith(("_", "pytest_")) or not _own(module, value):
                continue
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if not (inspect.getdoc(value) or "").strip():
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(value):
                missing += _undocumented_members(module, value)
    return missing


def _undocumented_members(module: ModuleType, cls: type) -> list[str]:
    missing = []
    for name, member in vars(cls).items():
        # pytest hook implementations are documented by pytest's hook specifications.
        if name.startswith(("_", "pytest_")):
            continue
        function = member.fget if isinstance(member, property) else member
        if isinstance(function, staticmethod | classmethod):
            function = function.__func__
        if not inspect.isfunction(function):
            continue
        # A method documented by the class or protocol it overrides or implements counts.
        documented = any(
            (inspect.getdoc(getattr(base, name, None)) or "").strip()
            for base in cls.__mro__
            if base is not object and name in vars(base)
        )
        if not documented:
            missing.append(f"{module.__name__}.{cls.__name__}.{name}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert undocumented() == []
