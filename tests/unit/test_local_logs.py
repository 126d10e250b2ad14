"""Function logs in `make local`: one readable line each by default, Lambda's JSON with -v."""

import io
import json
import logging

from aws_lambda_powertools import Logger

from gasmon_local.logs import FunctionLogs, readable_line


def powertools_logger(stream: io.StringIO, service: str) -> Logger:
    return Logger(service=service, logger_handler=logging.StreamHandler(stream), level="INFO")


def test_a_powertools_line_becomes_one_readable_line_with_the_handlers_keys() -> None:
    # Given the layer's Logger dressed for the terminal
    stream = io.StringIO()
    logger = powertools_logger(stream, "gasmon-test-readable")
    FunctionLogs.configure("readable", None)
    FunctionLogs.dress(logger)
    # When a handler logs with keys of its own, after appending a key as handlers do
    logger.append_keys(service="presence")
    logger.info("lifecycle event recorded", extra={"client_id": "RPI", "applied": True})
    # Then one line: service, level, message and its keys, none of Lambda's context
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert " presence INFO    lifecycle event recorded  client_id=RPI applied=true" in line
    assert "function_arn" not in line and not line.startswith("{")


def test_verbose_keeps_lambdas_json() -> None:
    stream = io.StringIO()
    logger = powertools_logger(stream, "gasmon-test-json")
    FunctionLogs.configure("json", None)
    FunctionLogs.dress(logger)
    logger.info("stored", extra={"accepted": 4})
    assert json.loads(stream.getvalue())["accepted"] == 4
    FunctionLogs.configure("readable", None)


def test_an_exception_keeps_its_last_line_and_points_to_verbose() -> None:
    document = {
        "level": "ERROR",
        "message": "publish failed",
        "service": "ingest",
        "exception": "Traceback\n  x\nE: boom",
    }
    line = readable_line(document, "12:00:00", 5)
    assert line.startswith("12:00:00.005 ingest   ERROR   publish failed")
    assert "E: boom" in line and "-v" in line


def test_a_handler_clearing_its_log_state_keeps_its_own_service_name() -> None:
    # Given the layer's one Logger, shared by every function of the local stack
    from gasmon.observability import logger
    from gasmon_local.functions import _name_the_service

    _name_the_service({"POWERTOOLS_SERVICE_NAME": "authorizer"})
    # When the next invocation is another function's, whose handler clears the log state
    # (what inject_lambda_context(clear_state=True) does before every invocation)
    _name_the_service({"POWERTOOLS_SERVICE_NAME": "presence"})
    logger.clear_state()
    # Then its lines name that function's service, not the first function's
    assert logger.registered_formatter.log_format["service"] == "presence"
