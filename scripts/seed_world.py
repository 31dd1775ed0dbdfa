#!/usr/bin/env python3
"""Seed a Caregate server with the world scripts/schemathesis tests against.

    scripts/seed_world.py BASE_URL OPERATOR_TOKEN CAREGATE_BINARY CATALOG_DIR OUT.json

Creates, through the management API only (as an operator, a developer and a clinic admin):
  - a developer, and a second one whose tokens are only for POST /manage/tokens/rotate;
  - a production clinic with synthetic sample data;
  - a marketplace-v3 app declaring every v3 and v1 scope an API key may carry, installed
    (all approved; no marketplace scope goes through the operator's review queue), and an API
    key selecting every one of them (serves /v3 and /v1);
  - a platform app declaring every non-SMART platform scope and the backend-services ones
    (system/*; approved in the review queue), installed, an API key with every scope an API
    key may carry, and a clinic-bound OAuth client (credential type oauth2) with every scope,
    for the OAuth-only platform routes and bulk export;
  - a practice-api app declaring `apiv2`, installed, and a clinic-bound OAuth client with
    `apiv2` (the practice API takes no API keys);
  - a marketplace-v3 OAuth client (client secret), the client the /oauth2/* operations
    may be called with;
  - scratch resources (an app, its installation and key, a pending scope review, a management
    token) for the operations that change or end what they name;
  - one record of each /v3 collection and one resource of each FHIR type, for the operations
    that read one by its id.
Writes every credential and identifier to OUT.json for the schemathesis hooks.
"""
import json
import subprocess
import sys

import requests

base, operator, caregate, catalogs, out = sys.argv[1:6]
session = requests.Session()


def call(method, path, token, body=None, expect=(200, 201), organization=None):
    headers = {"Authorization": f"Bearer {token}"}
    if organization:
        headers["X-Organization-Id"] = organization
    response = session.request(method, base + path, json=body, timeout=30, headers=headers)
    if response.status_code not in expect:
        sys.exit(f"seed: {method} {path} answered {response.status_code}: {response.text}")
    return response.json() if response.content else None


def catalog(surface):
    output = subprocess.run([caregate, "scopes", "--surface", surface, "--json", "--catalogs", catalogs],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output)["scopes"]


def names(scopes, credential_type):
    return [s["name"] for s in scopes if credential_type in s["credentialTypes"] and not s.get("smart")]


def access_token(client, scope=None):
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    response = session.post(base + "/oauth2/token", data=form, timeout=30,
                            auth=(client["clientId"], client["clientSecret"]))
    if response.status_code != 200:
        sys.exit(f"seed: token for {client['clientId']} answered {response.status_code}: {response.text}")
    return response.json()["access_token"]


def pending_reviews(app):
    """The app's scopes waiting in the operator's review queue (those not self-service)."""
    return [r for r in call("GET", "/manage/scope-reviews?status=pending", operator) if r["appId"] == app["id"]]


def approve_reviews(app):
    """An app's scopes that are not self-service take effect once the operator approves them
    (the review queue); until then its keys' requests on their routes are refused with 403."""
    for review in pending_reviews(app):
        call("POST", f"/manage/scope-reviews/{review['id']}/approve", operator)


developer = call("POST", "/manage/developers", operator, {"name": "Schemathesis", "email": "st@example.com"})
dev = developer["token"]
# a second developer whose tokens only POST /manage/tokens/rotate uses (each rotation ends one)
rotator = call("POST", "/manage/developers", operator, {"name": "Rotator", "email": "rotator@example.com"})
clinic = call("POST", "/manage/organizations", operator, {"name": "Schemathesis clinic"})
admin = clinic["adminToken"]
call("POST", f"/manage/organizations/{clinic['id']}/sample-data", operator, {"patients": 20})

# marketplace: one app for /v3 and /v1 (they share apps, installations and keys)
v3 = catalog("marketplace-v3")
v1 = catalog("marketplace-v1")
market_scopes = list(dict.fromkeys(names(v3, "API Key") + names(v1, "API Key")))
try:
    market_app = call("POST", "/manage/apps", dev, {"slug": "st-market", "name": "Schemathesis marketplace",
                                                    "surface": "marketplace-v3", "scopes": market_scopes})
except SystemExit:
    # a v1-only scope the v3 catalog does not know: declare the v3 ones only
    market_scopes = names(v3, "API Key")
    market_app = call("POST", "/manage/apps", dev, {"slug": "st-market", "name": "Schemathesis marketplace",
                                                    "surface": "marketplace-v3", "scopes": market_scopes})
call("POST", "/manage/installations", admin, {"appId": market_app["id"]})
market_key = call("POST", f"/manage/apps/{market_app['id']}/keys", dev,
                  {"name": "schemathesis", "environment": "prd", "scopes": market_scopes})
market_client = call("POST", f"/manage/apps/{market_app['id']}/oauth-clients", dev,
                     {"scopes": names(v3, "OAuth 2.0"), "grantTypes": ["client_credentials"]})

# platform: an API key with every API-key scope, and a clinic-bound OAuth client with all of them
platform = catalog("platform")
# Its SMART scopes are for apps acting for a person, except the backend-services ones (system/*),
# which a clinic-bound client_credentials client may hold: bulk export ($export) needs them.
system_scopes = [s["name"] for s in platform if s["name"].startswith("system/")]
platform_scopes = [s["name"] for s in platform if not s.get("smart")] + system_scopes
platform_app = call("POST", "/manage/apps", dev, {"slug": "st-platform", "name": "Schemathesis platform",
                                                  "surface": "platform", "scopes": platform_scopes})
call("POST", "/manage/installations", admin, {"appId": platform_app["id"]})
approve_reviews(platform_app)
platform_key_scopes = names(platform, "API Key")
platform_key = call("POST", f"/manage/apps/{platform_app['id']}/keys", dev,
                    {"name": "schemathesis", "environment": "prd", "scopes": platform_key_scopes})
platform_client = call("POST", f"/manage/apps/{platform_app['id']}/oauth-clients", dev,
                       {"scopes": names(platform, "OAuth 2.0") + system_scopes,
                        "grantTypes": ["client_credentials"],
                        "credentialType": "oauth2", "organizationId": clinic["id"]})

# practice API: apiv2 through a clinic-bound OAuth client
practice_app = call("POST", "/manage/apps", dev, {"slug": "st-practice", "name": "Schemathesis practice",
                                                  "surface": "practice-api", "scopes": ["apiv2"]})
call("POST", "/manage/installations", admin, {"appId": practice_app["id"]})
practice_client = call("POST", f"/manage/apps/{practice_app['id']}/oauth-clients", dev,
                       {"scopes": ["apiv2"], "grantTypes": ["client_credentials"],
                        "organizationId": clinic["id"]})

# Scratch resources for the operations that change or end what they name (a new app version, an
# installation's re-approval or removal, a key's rotation or revocation, a token's revocation, a
# scope review's decision): scripts/schemathesis.toml points those operations here. Otherwise they
# reach the credentials above through identifiers schemathesis reads from earlier answers, and
# every operation after them is refused (a new app version with a few scopes narrowed the
# marketplace key to them, 2026-12-03).
# A platform app, whose scopes that are not self-service wait for review: one of those reviews is
# the scratch review.
scratch_app = call("POST", "/manage/apps", dev, {"slug": "st-scratch", "name": "Schemathesis scratch",
                                                 "surface": "platform", "scopes": platform_scopes})
scratch_installation = call("POST", "/manage/installations", admin, {"appId": scratch_app["id"]})
scratch_key = call("POST", f"/manage/apps/{scratch_app['id']}/keys", dev,
                   {"name": "scratch", "environment": "prd", "scopes": platform_key_scopes[:1]})
scratch_token = call("POST", "/manage/tokens", operator, {"subjectId": rotator["id"]})
scratch_reviews = pending_reviews(scratch_app)
if not scratch_reviews:
    sys.exit("seed: the scratch app has no scope waiting for review")

# One record of each kind in the clinic, for the operations that read one by its id
# (scripts/schemathesis.toml pins them): otherwise they are only ever answered 404.
def first(path, token, pick):
    found = pick(call("GET", path, token, expect=(200,), organization=clinic["id"]))
    if not found:
        sys.exit(f"seed: GET {path} found nothing in the sample data")
    return found[0]


records = {}
for collection in ["appointments", "bills", "claims", "emails", "facilities", "inventory/changes", "inventory/products",
                   "notes", "patients", "providers", "tasks"]:
    record = first(f"/v3/{collection}?limit=1", market_key["key"], lambda page: [r["id"] for r in page["data"]])
    records[record.split("_")[0]] = record
platform_token = access_token(platform_client)
resources = {}
for resource_type in ["AllergyIntolerance", "Appointment", "Condition", "Encounter", "Location", "Observation",
                      "Organization", "Patient", "Practitioner"]:
    resources[resource_type] = first(f"/fhir/R4/{resource_type}?_count=1", platform_token,
                                     lambda bundle: [e["resource"]["id"] for e in bundle.get("entry", [])])

world = {
    "base": base,
    "operator": operator,
    "developer": {"id": developer["id"], "token": dev},
    "rotator": {"id": rotator["id"]},
    "clinic": {"id": clinic["id"], "uuid": clinic["uuid"], "adminToken": admin},
    "marketplace": {"appId": market_app["id"], "key": market_key["key"], "keyId": market_key["id"],
                    "scopes": market_scopes, "clientId": market_client["clientId"],
                    "clientSecret": market_client["clientSecret"]},
    "platform": {"appId": platform_app["id"], "key": platform_key["key"], "keyScopes": platform_key_scopes,
                 "clientId": platform_client["clientId"], "token": platform_token},
    "practice": {"appId": practice_app["id"], "clientId": practice_client["clientId"],
                 "token": access_token(practice_client)},
    "scratch": {"appId": scratch_app["id"], "installationId": scratch_installation["id"], "keyId": scratch_key["id"],
                "tokenId": scratch_token["id"], "reviewId": scratch_reviews[0]["id"]},
    "records": records,
    "resources": resources,
}
with open(out, "w") as f:
    json.dump(world, f, indent=1)
print(f"seeded: developer {developer['id']}, clinic {clinic['id']}, apps {market_app['id']} (marketplace-v3, "
      f"{len(market_scopes)} scopes), {platform_app['id']} (platform), {practice_app['id']} (practice-api)")
