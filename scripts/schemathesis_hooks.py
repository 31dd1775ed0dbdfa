"""Schemathesis hooks of scripts/schemathesis: the credential each operation is called with.

The world comes from scripts/seed_world.py (the JSON file named by CG_WORLD). The credential
follows the security requirement the operation declares in /openapi.json:

  managementToken  the principal the operation is for, from its `x-caregate-callers`: the
                   operator when it may call it, else the developer, else the clinic admin (a
                   clinic's users of any clinic but the seeded one: the operator, see
                   before_call). POST /manage/tokens/rotate (the
                   caller's own token, which stops at once) gets a fresh token of a developer
                   kept for it alone, issued by the operator for every test case;
  apiKey           the marketplace-v3 key with every scope (/v3 and /v1 share it);
  credential       gateway routes: on the platform surface the platform API key when it may
                   carry the route's `x-required-scope`, else an access token of the
                   clinic-bound platform OAuth client; on the practice API an access token of
                   the clinic-bound `apiv2` client (the practice API takes no API keys);
  oauthClient      (HTTP Basic, /oauth2/token, introspect and revoke) the marketplace OAuth
                   client's id and secret, unless the generated form authenticates the client
                   itself (client_id, client_secret or an assertion).

Operations without a security requirement are sent without credentials. X-Organization-Id is
not set here: it is a declared header parameter, pinned in scripts/schemathesis.toml.
Every provider is uncached (refresh_interval=None) so a 401 is never retried behind the
checks' back.
"""
import ast
import base64
import json
import os
import sys
import threading

import requests

import schemathesis

# CPython 3.11 before 3.11.8 can fail with "SystemError: AST constructor recursion depth
# mismatch" when two threads build ASTs at once (python/cpython#106905). Hypothesis builds
# them from schemathesis's workers (to describe its filter lambdas). One lock makes those
# builds take turns; the race had crashed a run and its retry in a row (2026-12-02).
if sys.version_info < (3, 11, 8):
    _unlocked_parse = ast.parse
    _ast_lock = threading.Lock()

    def _parse_in_turn(*args, **kwargs):
        with _ast_lock:
            return _unlocked_parse(*args, **kwargs)

    ast.parse = _parse_in_turn

with open(os.environ["CG_WORLD"]) as f:
    WORLD = json.load(f)

_PLATFORM_KEY_SCOPES = set(WORLD["platform"]["keyScopes"])
_FORM_CLIENT_FIELDS = {"client_id", "client_secret", "client_assertion", "client_assertion_type"}


def _security_names(operation):
    definition = operation.definition.raw
    security = definition.get("security")
    if security is None:
        security = operation.schema.raw_schema.get("security", [])
    names = []
    for requirement in security:
        names.extend(requirement)
    return names


def _scheme(operation, name):
    return operation.schema.raw_schema.get("components", {}).get("securitySchemes", {}).get(name, {})


def _management_token(operation, case):
    if operation.method.upper() == "POST" and operation.path == "/manage/tokens/rotate":
        response = requests.post(WORLD["base"] + "/manage/tokens", timeout=30,
                                 json={"subjectId": WORLD["rotator"]["id"]},
                                 headers={"Authorization": "Bearer " + WORLD["operator"]})
        response.raise_for_status()
        return response.json()["token"]
    callers = operation.definition.raw.get("x-caregate-callers", ["operator"])
    if "operator" in callers:
        return WORLD["operator"]
    if "developer" in callers:
        return WORLD["developer"]["token"]
    return WORLD["clinic"]["adminToken"]


def _gateway_credential(operation):
    definition = operation.definition.raw
    tags = definition.get("tags", [])
    if "practice-api" in tags:
        return WORLD["practice"]["token"]
    if definition.get("x-required-scope") in _PLATFORM_KEY_SCOPES:
        return WORLD["platform"]["key"]
    return WORLD["platform"]["token"]


@schemathesis.auth(refresh_interval=None)
class CaregateAuth:
    def get(self, case, context):
        operation = case.operation
        for name in _security_names(operation):
            scheme = _scheme(operation, name)
            if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "basic":
                # A form that authenticates the client itself is sent as it is: one method per request.
                if isinstance(case.body, dict) and _FORM_CLIENT_FIELDS & case.body.keys():
                    return None
                client = WORLD["marketplace"]
                raw = f"{client['clientId']}:{client['clientSecret']}".encode()
                return "Basic " + base64.b64encode(raw).decode()
            if name == "managementToken":
                return "Bearer " + _management_token(operation, case)
            if name == "apiKey":
                return "Bearer " + WORLD["marketplace"]["key"]
            if name == "credential":
                return "Bearer " + _gateway_credential(operation)
        return None

    def set(self, case, data, context):
        case.headers = case.headers or {}
        if data is None:
            # No credential of ours (the form authenticates the client): none generated either.
            case.headers.pop("Authorization", None)
            return
        case.headers["Authorization"] = data


@schemathesis.hook
def before_call(context, case, kwargs):
    # A clinic's users: only that clinic's own admin reaches them. scripts/schemathesis.toml pins
    # their orgId to the seeded clinic, but the credential is chosen before that value is applied,
    # so it is matched to the orgId sent here. The stateful phase follows "POST
    # /manage/organizations" (a clinic the operator just made) to these operations: the seeded
    # clinic's admin would be answered 404 there (no caller learns which clinics exist), which
    # schemathesis reports as a created resource that cannot be found, so the operator is sent: a
    # 403, the same isolation. A credential a check left out or replaced is left as it is.
    if not case.operation.path.startswith("/manage/organizations/{orgId}/users"):
        return
    ours = {"Bearer " + WORLD["clinic"]["adminToken"], "Bearer " + WORLD["operator"]}
    if (case.headers or {}).get("Authorization") not in ours:
        return
    named = (case.path_parameters or {}).get("orgId")
    seeded = named in (WORLD["clinic"]["id"], WORLD["clinic"]["uuid"])
    case.headers["Authorization"] = "Bearer " + (WORLD["clinic"]["adminToken"] if seeded else WORLD["operator"])
