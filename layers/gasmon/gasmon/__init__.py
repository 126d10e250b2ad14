"""gasmon's Lambda layer.

Importing the package defers `importlib.metadata` until something reads from it: pydantic imports
it for its plugin loader, which never reads it while `PYDANTIC_DISABLE_PLUGINS` is set
(template.yaml's Globals set it), and it brings zipfile, shutil, bz2, lzma and importlib.resources
with it, about a tenth of a cold start (docs/decision_log.md, issue 14). The module is registered
unexecuted, with a PEP 562 `__getattr__`: the first name asked of it runs the real module into
the same module object, so `from importlib.metadata import version` anywhere still works. (The
standard library's `LazyLoader` cannot do this: the import system reads `__spec__`, which loads
it.) A process that has imported it already is left as it is.
"""

from __future__ import annotations

import sys
from typing import Any


def _defer_until_used(name: str) -> None:
    if name in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # pragma: no cover - part of the standard library
        return
    module = importlib.util.module_from_spec(spec)
    loaded = False

    def __getattr__(attribute: str) -> Any:
        nonlocal loaded
        if loaded or (attribute.startswith("__") and attribute != "__all__"):
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        loaded = True
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return getattr(module, attribute)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


_defer_until_used("importlib.metadata")
