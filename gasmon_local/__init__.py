"""Runs gasmon on one machine with no AWS account and no Docker (`make local`).

Nothing in this package ships in a Lambda artifact: it stands in for API Gateway, AWS IoT Core,
SNS/SQS/DynamoDB (through moto's server) and OpenSearch (through the SQLite store).
"""
