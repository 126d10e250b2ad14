"""Loading Lambda handlers the way the Lambda runtime does: by file, from a function's CodeUri."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Handler = Callable[..., Any]


def load_handler(code_uri: str | Path, handler: str = "app.lambda_handler") -> Handler:
    """Import `<code_uri>/<module>.py` under a name of its own and return its handler function.

    Each function folder has its own `app.py`, so modules are registered as
    `gasmon_fn_<folder>` to keep two functions from shadowing each other.
    """
    module_name, function_name = handler.rsplit(".", 1)
    folder = (ROOT / code_uri).resolve()
    unique = f"gasmon_fn_{folder.name}_{module_name}"
    module = sys.modules.get(unique)
    if module is None:
        spec = importlib.util.spec_from_file_location(unique, folder / f"{module_name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"no module {module_name}.py in {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    return getattr(module, function_name)  # type: ignore[no-any-return]


def load_function_module(code_uri: str | Path, module_name: str = "app") -> Any:
    """The module object of a function (for its `app` resolver, say)."""
    load_handler(code_uri, f"{module_name}.lambda_handler")
    return sys.modules[f"gasmon_fn_{(ROOT / code_uri).resolve().name}_{module_name}"]
