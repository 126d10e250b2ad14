"""Function logs in `make local`: one readable line each, or Lambda's JSON with `-v`.

In AWS every Powertools log line is a JSON document for CloudWatch Logs Insights (~500 characters
with the Lambda context). On a terminal that drowns the stack's own one-line log, so locally the
layer's shared Logger gets a formatter that keeps the JSON formatter (every `append_keys` still
lands where the handler put it) and prints what a person reads: time, service, level, message and
the handler's own keys. `-v` keeps the JSON as Lambda writes it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

# Keys every line carries in Lambda: context a person does not need on each line here.
CONTEXT_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "sampling_rate",
        "exception",
        "exception_name",
        "stack_trace",
    }
)


class ReadableFormatter(logging.Formatter):
    """Wraps Powertools' JSON formatter: same keys, printed as one line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # append_keys, remove_keys, ...: the JSON formatter's
        return getattr(self.inner, name)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return text
        return readable_line(document, self.formatTime(record, "%H:%M:%S"), record.msecs)


def readable_line(document: dict[str, Any], clock: str, msecs: float) -> str:
    """`HH:MM:SS.mmm <service> LEVEL message key=value ...`, and the exception's last line if any."""
    service = str(document.get("service") or "fn")
    level = str(document.get("level") or "INFO")
    message = document.get("message")
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    extras = " ".join(
        f"{key}={_compact(value)}" for key, value in document.items() if key not in CONTEXT_KEYS and value is not None
    )
    line = f"{clock}.{int(msecs):03d} {service:<8} {level:<7} {text}" + (f"  {extras}" if extras else "")
    exception = document.get("exception")
    if exception:
        last = str(exception).strip().splitlines()[-1]
        line += f"  [{document.get('exception_name') or 'error'}: {last}] (-v for the traceback)"
    return line


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."


class FunctionLogs:
    """How the local stack shows the layer's Logger: style ("readable"/"json") and level."""

    style = "readable"
    level: int | None = None

    @classmethod
    def configure(cls, style: str, level: int | None) -> None:
        cls.style, cls.level = style, level

    @classmethod
    def dress(cls, logger: Any) -> None:
        """Apply the chosen style and level to a Powertools Logger (once is enough; repeat is harmless)."""
        if cls.level is not None:
            logger.setLevel(cls.level)
        if cls.style != "readable":
            return
        handler = getattr(logger, "registered_handler", None)
        if handler is None or isinstance(handler.formatter, ReadableFormatter) or handler.formatter is None:
            return
        handler.setFormatter(ReadableFormatter(handler.formatter))
