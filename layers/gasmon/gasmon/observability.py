"""The one place Logger, Tracer and Metrics are created.

Service name, namespace and log level come from the `POWERTOOLS_*` variables in template.yaml's
Globals. Handlers stack the decorators in this order: logger, tracer, metrics.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
