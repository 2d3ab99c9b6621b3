"""Prints botocore's DSQL tokens for the fixed credentials and time of src/iam.rs's
`dsql_tokens_match_botocores_signer` (access key `akid`, secret `secret`, no session,
2024-08-26T22:00:00Z, us-east-1). Run with the test venv's python:
    target/moto-venv/bin/python tests/iam/dsql_vectors.py
"""
import datetime
from unittest import mock

import botocore.session

session = botocore.session.get_session()
session.set_credentials("akid", "secret")
client = session.create_client("dsql", region_name="us-east-1")
fixed = datetime.datetime(2024, 8, 26, 22, 0, 0)
with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
    host = "peccy.dsql.us-east-1.on.aws"
    print(client.generate_db_connect_admin_auth_token(host, "us-east-1"))
    print(client.generate_db_connect_auth_token(host, "us-east-1"))
