"""Powertools' REST resolver without the rest of its package: what the HTTP functions import.

`aws_lambda_powertools/event_handler/__init__.py` imports every resolver Powertools has (AppSync,
and through it asyncio; Bedrock agents; VPC Lattice...) and `utilities/data_classes/__init__.py`
imports some forty event classes: together about 70 ms of a cold start spent on classes gasmon
never uses. Python runs a package's `__init__` before any of its submodules, so importing
`event_handler.api_gateway` directly still pays for all of it.

`lazy_package` registers such a package without running its `__init__`: a module object whose
`__path__` is the package's folder, so its submodules import as usual, and whose names load on
first use (PEP 562 `__getattr__`): a name the `__init__` imports from a submodule comes from that
submodule alone; anything else runs the real `__init__` into the same module, so every
`from aws_lambda_powertools.event_handler import X` still works. A package already imported is
left as it is.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

LEAN_PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes")


def _exports(spec: Any) -> dict[str, str]:
    """name -> submodule for every `from <package>.<sub> import name` in the package's `__init__`."""
    source = spec.loader.get_source(spec.name) if spec.loader is not None else None
    if not source:
        return {}
    exports: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            module = f"{spec.name}.{node.module}" if node.level == 1 else node.module
            if module.startswith(f"{spec.name}."):
                for alias in node.names:
                    exports[alias.asname or alias.name] = module
    return exports


def lazy_package(name: str) -> ModuleType:
    """Register package `name` with its `__init__` deferred until a name it alone defines is asked for."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    exports = _exports(spec)
    state = {"initialised": False}

    def __getattr__(attribute: str) -> Any:
        if attribute.startswith("__") and attribute != "__all__":  # `import *` wants the real __all__
            raise AttributeError(attribute)
        if attribute in exports:
            value = getattr(importlib.import_module(exports[attribute]), attribute)
            setattr(module, attribute, value)
            return value
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")
        if not state["initialised"]:
            state["initialised"] = True
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            return getattr(module, attribute)
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, module)
    return module


for _package in LEAN_PACKAGES:
    lazy_package(_package)

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError  # noqa: E402

__all__ = ["APIGatewayRestResolver", "RequestValidationError", "Response", "lazy_package"]
