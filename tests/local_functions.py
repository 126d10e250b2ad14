"""A function of a test's own for the local runtime (gasmon_local.functions), for tests: its
`app.py` written under the test's folder, described as the template would describe it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from gasmon_local.template import FunctionSpec


def function_spec(tmp_path: Path, logical_id: str, source: str, timeout: int, **fields: Any) -> FunctionSpec:
    """Write `source` as `<tmp_path>/<logical_id lower-cased>/app.py`; `fields` are further
    FunctionSpec fields (async_config, reserved_concurrency)."""
    folder = tmp_path / logical_id.lower()
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(source))
    return FunctionSpec(
        logical_id=logical_id,
        name=f"gasmon-{logical_id}",
        arn=f"arn:aws:lambda:ap-northeast-2:123456789012:function:gasmon-{logical_id}",
        code_uri=folder,
        handler="app.lambda_handler",
        runtime="python3.13",
        timeout=timeout,
        memory=128,
        environment={},
        **fields,
    )
