"""`gasmon-admin`: provision, list, revoke and rotate device credentials and issue viewer keys.

An operator's tool (a console script of the project), never part of a Lambda artifact. It works
the same against a deployed stack (`--stack NAME`, boto3's default credentials, resources from
the stack's outputs) and against `make local` (`--local` or `--endpoints-file F`: moto's IoT and
DynamoDB, certificates from the local CA in the data dir).
"""
