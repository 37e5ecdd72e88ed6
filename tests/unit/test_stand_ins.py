"""The local stand-ins refuse what the real services refuse, so the end-to-end tests can fail."""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mfotel.testing import DatadogIntake, SigV4Verifier

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _signed(secret: str, service: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST", url="http://127.0.0.1:9/v1/logs", data=body, headers={"x-aws-log-group": "g"}
    )
    SigV4Auth(Credentials(KEY, secret), service, "eu-west-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:9"
    return headers


@pytest.mark.parametrize(
    ("secret", "service", "sent_body", "verdict"),
    [
        (SECRET, "logs", b"payload", None),
        ("wrong-secret", "logs", b"payload", "signature does not match"),
        (SECRET, "xray", b"payload", "signed for eu-west-1/xray, not eu-west-1/logs"),
        (SECRET, "logs", b"tampered", "x-amz-content-sha256 does not match the body"),
    ],
)
def test_sigv4_verifier_accepts_only_a_true_signature(
    secret: str, service: str, sent_body: bytes, verdict: str | None
) -> None:
    verifier = SigV4Verifier(KEY, SECRET, "eu-west-1", {"/v1/logs": "logs"})
    headers = _signed(secret, service, b"payload")
    headers["x-amz-content-sha256"] = hashlib.sha256(b"payload").hexdigest()
    result = verifier("POST", "/v1/logs", headers, sent_body)
    assert result == verdict or (verdict and result and verdict in result)


def test_datadog_intake_refuses_a_wrong_api_key_and_decodes_logs() -> None:
    with DatadogIntake("right") as dd:
        body = gzip.compress(json.dumps([{"message": "hello"}]).encode())

        def post(key: str) -> int:
            req = urllib.request.Request(
                f"{dd.url}/api/v2/logs",
                data=body,
                headers={
                    "DD-API-KEY": key,
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                },
            )
            try:
                with urllib.request.urlopen(req) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as err:
                return err.code

        assert post("wrong") == 403
        assert post("right") == 202
    assert dd.logs == [{"message": "hello"}]
    assert dd.rejected == ["POST /api/v2/logs: missing or wrong DD-API-KEY"]
