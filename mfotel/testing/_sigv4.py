"""Verify AWS Signature Version 4 on a received request, as an AWS endpoint does.

``SigV4Verifier(access_key, secret_key, region)`` is an ``OTLPReceiver`` ``authorize`` hook: it
recomputes the signature with botocore's signer from the request the collector actually sent
(method, path, signed headers, body) and refuses anything that does not match, is for another
region or service, or signs a body other than the one received.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})"
)


class SigV4Verifier:
    def __init__(
        self, access_key: str, secret_key: str, region: str, services: Mapping[str, str]
    ) -> None:
        """``services`` maps a URL path to the signing service it needs, e.g. /v1/logs -> logs."""
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.services = dict(services)
        self.verified = 0

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        match = _AUTH.fullmatch(headers.get("authorization", ""))
        if match is None:
            return "missing or malformed SigV4 Authorization header"
        if match["key"] != self.access_key:
            return f"unknown access key {match['key']}"
        want = self.services.get(path.split("?")[0])
        if (match["region"], match["service"]) != (self.region, want):
            return f"signed for {match['region']}/{match['service']}, not {self.region}/{want}"
        claimed = headers.get("x-amz-content-sha256")
        if (
            claimed not in (None, "UNSIGNED-PAYLOAD")
            and claimed != hashlib.sha256(body).hexdigest()
        ):
            return "x-amz-content-sha256 does not match the body"
        signed = match["signed"].split(";")
        missing = [h for h in signed if h not in headers]
        if missing:
            return f"signed headers not sent: {missing}"
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{path}",
            data=body,
            headers={h: headers[h] for h in signed},
        )
        request.context["timestamp"] = headers.get("x-amz-date", "")
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key), want, self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if expected != match["sig"]:
            return "signature does not match"
        self.verified += 1
        return None
