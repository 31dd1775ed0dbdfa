"""A real third-party OAuth 2.0 client (authlib, from PyPI) against a running Caregate.

Usage: authlib_client.py BASE ISSUER DEVELOPER_TOKEN APP_ID CLINIC_ID CLIENT_ID CLIENT_SECRET

CLIENT_ID/CLIENT_SECRET are a secret client that the test registered; this script registers
a private_key_jwt client itself (with a JWK Set it generates), then prints one JSON object
of observations for the Swift test to check.
"""
import json
import sys
import time

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey, RSAKey  # the key classes authlib's PrivateKeyJWT signs with

base, issuer, developer, app_id, clinic_id, client_id, client_secret = sys.argv[1:8]
token_path = "/api/2.0/oauth2/token/"
token_url = base + token_path
# Caregate checks the assertion's aud against its issuer + the token path.
audience = issuer + token_path
out = {}

# 1. client_secret_basic, then client_secret_post: fetch, call the gateway, introspect, revoke.
for method in ["client_secret_basic", "client_secret_post"]:
    session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method=method, scope="system/patients.read")
    token = session.fetch_token(token_url, grant_type="client_credentials")
    out[method] = {"scope": token.get("scope"), "token_type": token.get("token_type"), "expires_in": token.get("expires_in")}
    out[method]["call"] = session.get(base + "/api/2.0/patients/").status_code
    out[method]["write"] = session.post(base + "/api/2.0/patients/", json={}).status_code
    introspection = session.introspect_token(base + "/oauth2/introspect", token=token["access_token"]).json()
    out[method]["active"] = introspection.get("active")
    out[method]["introspected_scope"] = introspection.get("scope")
    out[method]["revoke"] = session.revoke_token(base + "/oauth2/revoke", token=token["access_token"]).status_code
    out[method]["after_revoke"] = session.get(base + "/api/2.0/patients/").status_code
    out[method]["introspect_after_revoke"] = session.introspect_token(base + "/oauth2/introspect", token=token["access_token"]).json()

# 2. private_key_jwt (SMART backend services): register a client with our public keys.
keys = {
    "RS384": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
    "ES384": ECKey.generate_key("P-384", parameters={"kid": "ec-1"}),
}
jwks = {"keys": [key.as_dict(private=False) | {"alg": alg} for alg, key in keys.items()]}
registered = requests.post(
    base + f"/manage/apps/{app_id}/oauth-clients",
    headers={"Authorization": "Bearer " + developer},
    json={"scopes": ["system/patients.read"], "grantTypes": ["client_credentials"], "organizationId": clinic_id, "jwks": jwks},
)
registered.raise_for_status()
jwt_client = registered.json()["clientId"]
out["jwt_client_has_secret"] = registered.json().get("clientSecret") is not None


def fetch(alg, **claims):
    # A fresh PrivateKeyJWT each time: authlib stores the generated jti in the claims dict
    # it was given, so reusing one would replay the jti (which Caregate refuses).
    auth = PrivateKeyJWT(audience, alg=alg, headers={"kid": keys[alg].kid}, claims=dict(claims))
    session = OAuth2Session(jwt_client, keys[alg], token_endpoint_auth_method=auth, scope="system/patients.read")
    try:
        token = session.fetch_token(token_url, grant_type="client_credentials")
        return {"ok": True, "call": session.get(base + "/api/2.0/patients/").status_code, "scope": token.get("scope")}
    except Exception as error:  # authlib raises OAuthError with the server's error code
        return {"ok": False, "error": getattr(error, "error", None) or f"{type(error).__name__}: {error}"}


# SMART: exp at most five minutes ahead (authlib's default is an hour).
soon = int(time.time()) + 240
out["private_key_jwt_RS384"] = fetch("RS384", exp=soon)
out["private_key_jwt_ES384"] = fetch("ES384", exp=soon)
out["private_key_jwt_default_exp"] = fetch("RS384")
print(json.dumps(out))
