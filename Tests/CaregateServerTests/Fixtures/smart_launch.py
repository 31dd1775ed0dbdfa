"""SMART App Launch against a running Caregate, driven by real client libraries.

Usage: smart_launch.py CONFIG_JSON_PATH

The Swift test starts Caregate, creates a clinic, its users, clients and EHR launches, writes
them to CONFIG_JSON_PATH (base, fhirBase, adminToken, orgId, public/confidential/other
clients, patientUser/clinician/doomedUser/lockUser, pickPatient, foreignPatient, launches,
scopes) and runs this script. The script plays the browser (sign-in page, patient picker,
consent page: plain HTML forms) and the apps (fhirclient, authlib, requests-oauthlib and raw
requests), runs every scenario whatever the others did, and prints ONE line of JSON as the
last line of stdout: one key per scenario, each an object of observations (with "error" set
when the scenario raised; what it had recorded before stays). The Swift test asserts on that
object; diagnostics go to stderr and the exit status is 0.
"""
import base64
import hashlib
import json
import os
import secrets
import sys
import traceback
import urllib.parse
from html.parser import HTMLParser

os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses http:// URLs otherwise

import requests  # noqa: E402

# A sign-in hashes the password with scrypt on NIO's blocking pool (one thread per core, here two),
# which every server of the test process shares; in a full parallel run of a debug build one has
# waited over 30 s for it (2026-12-03). A request that hangs still fails.
TIMEOUT = 90


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def describe(error):
    """An exception as text, with the server's answer when the library kept it."""
    text = f"{type(error).__name__}: {error}"
    if getattr(error, "error", None):  # authlib's OAuthError
        text += f" [{error.error}: {getattr(error, 'description', None)}]"
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "status_code"):
        text += f" [HTTP {response.status_code}: {response.text[:300]}]"
    return text


# MARK: HTML forms


class PageParser(HTMLParser):
    """Collects a page's forms (inputs and submit buttons) and the text of class="error" elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms, self.errors = [], []
        self._form = None
        self._capture = None  # [tag, depth, text parts] while inside a class="error" element

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if self._capture is not None and tag == self._capture[0]:
            self._capture[1] += 1
        elif self._capture is None and "error" in a.get("class", "").split() and tag not in ("input", "br", "img", "hr"):
            self._capture = [tag, 1, []]
        if tag == "form":
            self._form = {"method": a.get("method", "get").lower(), "action": a.get("action", ""), "inputs": [], "buttons": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            kind = a.get("type", "text").lower()
            field = {"name": a.get("name"), "type": kind, "value": a.get("value", ""), "checked": "checked" in a}
            if kind in ("submit", "image"):
                self._form["buttons"].append(field)
            else:
                self._form["inputs"].append(field)
        elif tag == "button" and self._form is not None:
            self._form["buttons"].append({"name": a.get("name"), "type": a.get("type", "submit").lower(), "value": a.get("value", "")})

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if self._capture is not None and tag == self._capture[0]:
            self._capture[1] -= 1
            if self._capture[1] == 0:
                self.errors.append(" ".join("".join(self._capture[2]).split()))
                self._capture = None

    def handle_data(self, data):
        if self._capture is not None:
            self._capture[2].append(data)


def parse_page(html):
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def authorize_form(page):
    """The page's POST form to /oauth2/authorize/<step>, or None."""
    for form in page.forms:
        if form["method"] == "post" and form["action"].startswith("/oauth2/authorize/"):
            return form
    return None


def step_of(form):
    return form["action"].rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def offered_patients(form):
    return [f["value"] for f in form["inputs"] if f["name"] == "patient" and f["type"] == "radio"]


def fill(form, step, username=None, password=None, pick=None, untick=(), decision="approve"):
    """The fields a browser would post for this form, as a list of pairs (scope may repeat)."""
    data = []
    for field in form["inputs"]:
        name, kind = field["name"], field["type"]
        if not name or (step == "sign-in" and name in ("username", "password")) or (step == "patient" and name == "patient"):
            continue
        if kind in ("checkbox", "radio"):
            if field["checked"] and not (name == "scope" and field["value"] in untick):
                data.append((name, field["value"] or "on"))
        elif kind not in ("button", "reset", "file"):
            data.append((name, field["value"]))
    if step == "sign-in":
        data += [("username", username), ("password", password)]
    elif step == "patient":
        data.append(("patient", pick))
    buttons = [b for b in form["buttons"] if b["type"] in ("submit", "image") and b["name"]]
    if step == "consent":
        data.append(("decision", decision))
    elif buttons:
        data.append((buttons[0]["name"], buttons[0]["value"]))
    return data


def query_of(location):
    if not location:
        return {}
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query, keep_blank_values=True))


def authorize_pages(session, start, username, password, pick=None, untick=(), decision="approve"):
    """Follows the authorization pages (sign-in → optional picker → consent) like a browser.

    start is the authorize URL (GET) or (url, form params) to POST. Stops at the first answer
    that is not a 200 page with an authorization form (a redirect, a 400 or a 401), or at the
    picker when there is nothing to pick. Returns the final status, Location, its query, the
    steps seen, the patients offered on the picker and the final page's error text.
    """
    if isinstance(start, tuple):
        response = session.post(start[0], data=start[1], allow_redirects=False, timeout=TIMEOUT)
    else:
        response = session.get(start, allow_redirects=False, timeout=TIMEOUT)
    pages, offered, stuck = [], None, None
    for _ in range(8):
        if response.status_code != 200:
            break
        form = authorize_form(parse_page(response.text))
        if form is None:
            break
        step = step_of(form)
        pages.append(step)
        if step == "patient":
            offered = offered_patients(form)
            if pick is None:
                stuck = step
                break
        data = fill(form, step, username, password, pick, untick, decision)
        url = urllib.parse.urljoin(response.url, form["action"])
        response = session.post(url, data=data, allow_redirects=False, timeout=TIMEOUT)
    location = response.headers.get("Location")
    query = query_of(location)
    result = {
        "status": response.status_code, "location": location, "pages": pages, "offered": offered,
        "query": {k: query.get(k) for k in ("code", "state", "error", "error_description", "iss")},
    }
    if stuck:
        result["stuck_at"] = stuck
    if "html" in response.headers.get("Content-Type", ""):
        page = parse_page(response.text)
        result["error_text"] = page.errors[0] if page.errors else None
        form = authorize_form(page)
        result["final_page"] = step_of(form) if form else None
    return result


# MARK: OAuth helpers


def pkce():
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_params(cfg, client, scope, state, challenge, **changes):
    """A valid authorization request; a change set to None drops that parameter."""
    params = {
        "response_type": "code", "client_id": client["clientId"], "redirect_uri": client["redirectUri"], "scope": scope,
        "state": state, "aud": cfg["fhirBase"], "code_challenge": challenge, "code_challenge_method": "S256",
    }
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def raw_authorization(cfg, client, scope, user, pick=None, untick=(), decision="approve", launch=None):
    """One authorization with raw requests and our own PKCE; returns (pages result, verifier, state)."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(12)
    params = authorize_params(cfg, client, scope, state, challenge)
    if launch is not None:
        params["launch"] = launch
    url = cfg["base"] + "/oauth2/authorize?" + urllib.parse.urlencode(params)
    result = authorize_pages(requests.Session(), url, user["username"], user["password"], pick, untick, decision)
    return result, verifier, state


def client_post(cfg, path, client, data):
    """POST a form as `client`: HTTP Basic for a confidential client, client_id in the form for a public one."""
    data, auth = list(data), None
    if client.get("clientSecret"):
        auth = (client["clientId"], client["clientSecret"])
    else:
        data.append(("client_id", client["clientId"]))
    return requests.post(cfg["base"] + path, data=data, auth=auth, timeout=TIMEOUT)


def token_post(cfg, client, data):
    return client_post(cfg, "/oauth2/token", client, data)


def exchange(cfg, client, code, verifier=None, omit_verifier=False):
    data = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", client["redirectUri"])]
    if not omit_verifier:
        data.append(("code_verifier", verifier))
    return token_post(cfg, client, data)


def refresh(cfg, client, refresh_token, scope=None):
    data = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
    if scope is not None:
        data.append(("scope", scope))
    return token_post(cfg, client, data)


def body(response):
    try:
        value = response.json()
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


def outcome(response):
    answer = body(response)
    return {"status": response.status_code, "error": answer.get("error"), "error_description": answer.get("error_description")}


def introspect(cfg, client, token):
    response = client_post(cfg, "/oauth2/introspect", client, [("token", token)])
    return body(response) if response.ok else {"http_status": response.status_code, "body": response.text[:300]}


def code_and_token(cfg, client, scope, user, **kwargs):
    """A raw authorization up to a code, then its exchange: (pages result, token endpoint response)."""
    result, verifier, _ = raw_authorization(cfg, client, scope, user, **kwargs)
    code = result["query"]["code"]
    if not code:
        raise RuntimeError(f"no code: {result}")
    return result, exchange(cfg, client, code, verifier)


def with_timeout(session):
    """Gives every request of a library's own requests.Session a timeout."""
    original = session.request

    def request(method, url, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        return original(method, url, **kwargs)

    session.request = request
    return session


def verify_id_token(cfg, id_token, client_id, out):
    """Verifies an id_token's signature against the server's JWKS and its standard claims (joserfc).

    Returns its claims; when verification fails, the unverified claims (for the record).
    """
    from joserfc import jwt
    from joserfc.jwk import KeySet

    def segment(index):
        text = id_token.split(".")[index]
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    try:
        header = segment(0)
        out["id_token_alg"], out["id_token_kid"] = header.get("alg"), header.get("kid")
        jwks = requests.get(cfg["base"] + "/.well-known/jwks.json", timeout=TIMEOUT).json()
        token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            leeway=60, iss={"essential": True, "value": cfg["base"]}, aud={"essential": True, "value": client_id},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
        ).validate(token.claims)
        out["id_token_verified"] = True
        return token.claims
    except Exception as error:
        out["id_token_verified"] = False
        out["id_token_error"] = describe(error)
        try:
            return segment(1)
        except Exception:
            return None


# MARK: Scenarios


def fhirclient_flow(cfg, user, scope, out, pick=None):
    """fhirclient reads /metadata, builds the authorize URL; we drive the pages; it redeems the code."""
    from fhirclient.client import FHIRClient

    public = cfg["public"]
    # fhirclient prepends launch/patient itself (wants_patient, no launch token): leave it out here
    # so that the request carries it once.
    app_scope = " ".join(s for s in scope.split() if s != "launch/patient")
    client = FHIRClient(settings={"app_id": public["clientId"], "api_base": cfg["fhirBase"], "redirect_uri": public["redirectUri"], "scope": app_scope})
    with_timeout(client.server.session)
    client.prepare()  # reads {fhirBase}/metadata: the OAuth endpoints come from its oauth-uris extension
    url = client.authorize_url
    auth = client.server.auth
    out["authorize_endpoint"] = getattr(auth, "_authorize_uri", None)
    out["token_endpoint"] = getattr(auth, "_token_uri", None)
    out["requested_scope"] = query_of(url).get("scope")
    result = authorize_pages(requests.Session(), url, user["username"], user["password"], pick=pick)
    out["pages"], out["offered"], out["status"] = result["pages"], result["offered"], result["status"]
    out["state_ok"] = result["query"]["state"] is not None and result["query"]["state"] == auth.auth_state
    out["iss"] = result["query"]["iss"]
    if not result["query"]["code"]:
        out["redirect_error"] = result["query"]["error"]
        raise RuntimeError(f"no code: {result}")
    client.handle_callback(result["location"])
    context = client.launch_context or {}
    out["patient_id"] = client.patient_id
    out["scope"] = context.get("scope")
    out["token_type"] = context.get("token_type")
    out["need_patient_banner"] = context.get("need_patient_banner")
    out["has_id_token"] = "id_token" in context
    out["has_refresh"] = auth.refresh_token is not None
    # Through the built-in FHIR API: what the token opens there; every answer valid R4B.
    from fhir.resources.R4B import get_fhir_model_class

    reads, invalid = {}, []
    for name, path in [("own_patient", "Patient/" + str(client.patient_id)), ("other_patient", "Patient/" + cfg["foreignPatient"])]:
        response = requests.get(cfg["fhirBase"] + "/" + path, headers={"Authorization": "Bearer " + auth.access_token}, timeout=TIMEOUT)
        reads[name] = response.status_code
        try:
            resource = response.json()
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as error:  # noqa: BLE001 (any model error is a finding)
            invalid.append(f"{name}: {str(error)[:300]}")
    reads["invalid"] = invalid
    out["gateway_reads"] = reads
    return client


def fhirclient_patient(cfg, out):
    client = fhirclient_flow(cfg, cfg["patientUser"], cfg["scopes"]["patientApp"], out)
    auth = client.server.auth
    out["introspection"] = introspect(cfg, cfg["public"], auth.access_token)
    access_before, refresh_before = auth.access_token, auth.refresh_token
    try:
        out["refreshed"] = bool(client.reauthorize())
    except Exception as error:  # fhirclient raises requests' HTTPError on a 4xx
        out["refreshed"] = False
        out["refresh_error"] = describe(error)
    out["access_token_changed"] = auth.access_token != access_before
    out["refresh_token_changed"] = auth.refresh_token != refresh_before
    out["refreshed_scope"] = (client.launch_context or {}).get("scope")


def fhirclient_clinician(cfg, out):
    fhirclient_flow(cfg, cfg["clinician"], cfg["scopes"]["clinicianApp"], out, pick=cfg["pickPatient"])
    out["foreign_offered"] = cfg["foreignPatient"] in (out.get("offered") or [])


def picker_foreign(cfg, out):
    result, _, _ = raw_authorization(cfg, cfg["public"], cfg["scopes"]["clinicianApp"], cfg["clinician"], pick=cfg["foreignPatient"])
    out.update(status=result["status"], location=result["location"], has_code=bool(result["query"]["code"]), pages=result["pages"])
    out["foreign_offered"] = cfg["foreignPatient"] in (result["offered"] or [])


def authlib_ehr(cfg, out):
    from authlib.integrations.requests_client import OAuth2Session, OAuthError

    conf, base = cfg["confidential"], cfg["base"]
    token_url = base + "/oauth2/token"
    session = OAuth2Session(
        conf["clientId"], conf["clientSecret"], scope=cfg["scopes"]["ehrApp"], redirect_uri=conf["redirectUri"],
        code_challenge_method="S256", token_endpoint_auth_method="client_secret_basic", default_timeout=TIMEOUT,
    )
    verifier, nonce = secrets.token_urlsafe(64), secrets.token_urlsafe(16)
    url, state = session.create_authorization_url(
        base + "/oauth2/authorize", code_verifier=verifier, aud=cfg["fhirBase"], launch=cfg["launches"]["ehr"], nonce=nonce)
    result = authorize_pages(requests.Session(), url, cfg["clinician"]["username"], cfg["clinician"]["password"])
    out["pages"], out["status"], out["redirect_iss"] = result["pages"], result["status"], result["query"]["iss"]
    if not result["query"]["code"]:
        out["redirect_error"] = result["query"]["error"]
        raise RuntimeError(f"no code: {result}")
    token = session.fetch_token(token_url, authorization_response=result["location"], code_verifier=verifier, state=state)
    for key in ("patient", "encounter", "need_patient_banner", "scope", "token_type", "expires_in"):
        out[key] = token.get(key)
    out["has_refresh"], out["has_id_token"] = "refresh_token" in token, "id_token" in token
    if token.get("id_token"):
        claims = verify_id_token(cfg, token["id_token"], conf["clientId"], out) or {}
        out.update(aud=claims.get("aud"), iss=claims.get("iss"), nonce_ok=claims.get("nonce") == nonce,
                   fhirUser=claims.get("fhirUser"), sub=claims.get("sub"))

    old = token["refresh_token"]
    # authlib sends scope=<the session's scope> with a refresh unless told otherwise.
    out["refresh_sent_scope"] = session.scope
    try:
        new = session.refresh_token(token_url, refresh_token=old)
    except OAuthError as error:
        if error.error != "invalid_scope":
            raise
        out["refresh_default_error"] = describe(error)
        new = session.refresh_token(token_url, refresh_token=old, scope=None)  # no scope parameter at all
    out["refresh_rotated"] = new.get("refresh_token") not in (None, old)
    out["refresh_scope"] = new.get("scope")
    introspect_url = base + "/oauth2/introspect"
    out["refreshed_active"] = session.introspect_token(introspect_url, token=new["access_token"]).json().get("active")

    reuse = outcome(refresh(cfg, conf, old))
    out["reuse_status"], out["reuse_error"] = reuse["status"], reuse["error"]
    after = outcome(refresh(cfg, conf, new["refresh_token"]))
    out["after_reuse_status"], out["after_reuse_error"] = after["status"], after["error"]
    out["after_reuse_introspection"] = session.introspect_token(introspect_url, token=new["access_token"]).json()
    out["after_reuse_active"] = out["after_reuse_introspection"].get("active")


def refresh_rules(cfg, out):
    conf, other = cfg["confidential"], cfg["other"]
    result, response = code_and_token(cfg, conf, cfg["scopes"]["patientApp"], cfg["patientUser"])
    out["pages"], out["token_status"] = result["pages"], response.status_code
    token = body(response)
    granted = token.get("scope") or cfg["scopes"]["patientApp"]
    out["granted_scope"] = granted
    rt = token["refresh_token"]

    widen = outcome(refresh(cfg, conf, rt, scope=granted + " patient/Condition.rs"))
    out["widen_status"], out["widen_error"] = widen["status"], widen["error"]
    foreign = outcome(refresh(cfg, other, rt))
    out["other_client_status"], out["other_client_error"] = foreign["status"], foreign["error"]

    narrow = refresh(cfg, conf, rt, scope="offline_access patient/Patient.read")
    answer = body(narrow)
    out["narrow_status"], out["narrow_scope"], out["narrow_error"] = narrow.status_code, answer.get("scope"), answer.get("error")
    # The narrowed scope keeps offline_access, so a next refresh token comes back and (d) runs.
    out["narrow_has_refresh"] = "refresh_token" in answer
    if answer.get("refresh_token"):
        again = refresh(cfg, conf, answer["refresh_token"])
        out["after_narrow_status"], out["after_narrow_scope"] = again.status_code, body(again).get("scope")
        out["after_narrow_error"] = body(again).get("error")


def code_rules(cfg, out):
    conf, scope, user = cfg["confidential"], cfg["scopes"]["patientApp"], cfg["patientUser"]

    def fresh_code():
        result, verifier, _ = raw_authorization(cfg, conf, scope, user)
        code = result["query"]["code"]
        if not code:
            raise RuntimeError(f"no code: {result}")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        return code, verifier, challenge

    # Each bad verifier on a code of its own, so that each refusal is about the verifier.
    code, verifier, challenge = fresh_code()
    out["wrong_verifier"] = outcome(exchange(cfg, conf, code, pkce()[0]))
    # Whether the code survived that failure (the server consumes a code on any attempt).
    out["correct_after_failures"] = outcome(exchange(cfg, conf, code, verifier))
    code, _, challenge = fresh_code()
    out["verifier_is_challenge"] = outcome(exchange(cfg, conf, code, challenge))
    code, _, _ = fresh_code()
    out["blank_verifier"] = outcome(exchange(cfg, conf, code, ""))
    code, _, _ = fresh_code()
    out["missing_verifier"] = outcome(exchange(cfg, conf, code, omit_verifier=True))

    result, verifier, _ = raw_authorization(cfg, conf, scope, user)
    code = result["query"]["code"]
    if not code:
        raise RuntimeError(f"no second code: {result}")
    first = exchange(cfg, conf, code, verifier)
    out["first_use"] = {"status": first.status_code}
    token = body(first)
    out["active_before"] = introspect(cfg, conf, token["access_token"]).get("active")
    out["second_use"] = outcome(exchange(cfg, conf, code, verifier))
    out["active_after"] = introspect(cfg, conf, token["access_token"]).get("active")
    if token.get("refresh_token"):
        out["refresh_after_replay"] = outcome(refresh(cfg, conf, token["refresh_token"]))


def requests_oauthlib_plain(cfg, out):
    from requests_oauthlib import OAuth2Session

    public = cfg["public"]
    session = OAuth2Session(public["clientId"], redirect_uri=public["redirectUri"], scope=cfg["scopes"]["patientApp"].split(), pkce="plain")
    url, state = session.authorization_url(cfg["base"] + "/oauth2/authorize", aud=cfg["fhirBase"])
    # oauthlib's create_code_challenge returns None for "plain", so the URL may carry no PKCE at all.
    out["sent_method"] = query_of(url).get("code_challenge_method")
    out["sent_challenge"] = "code_challenge" in query_of(url)
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    query = query_of(response.headers.get("Location"))
    out.update(status=response.status_code, error=query.get("error"), error_description=query.get("error_description"),
               state_ok=query.get("state") == state)


def probe(cfg, params, method="GET"):
    """One authorization request in a fresh browser: the refusal, or the page it shows."""
    url = cfg["base"] + "/oauth2/authorize"
    session = requests.Session()
    if method == "GET":
        response = session.get(url, params=params, allow_redirects=False, timeout=TIMEOUT)
    else:
        response = session.post(url, data=params, allow_redirects=False, timeout=TIMEOUT)
    location = response.headers.get("Location")
    query = query_of(location)
    record = {"status": response.status_code, "has_location": location is not None, "error": query.get("error"),
              "error_description": query.get("error_description"), "state": query.get("state")}
    if response.status_code == 200:
        form = authorize_form(parse_page(response.text))
        record["page"] = step_of(form) if form else None
        record["sign_in"] = record["page"] == "sign-in"
    return record


def authorize_refusals(cfg, out):
    public, conf, scopes, launches = cfg["public"], cfg["confidential"], cfg["scopes"], cfg["launches"]

    def params(name, client=public, scope=scopes["patientApp"], **changes):
        return authorize_params(cfg, client, scope, "st-" + name, pkce()[1], **changes)

    def ehr(name, launch):
        return params(name, client=conf, scope=scopes["ehrApp"], launch=launch)

    cases = {
        "unknown_client": params("unknown_client", client_id="cli_doesnotexist"),
        "inexact_redirect": params("inexact_redirect", redirect_uri=public["redirectUri"] + "/x"),
        "redirect_trailing_slash": params("redirect_trailing_slash", redirect_uri=public["redirectUri"] + "/"),
        "wrong_aud": params("wrong_aud", aud="https://evil.example/fhir/R4"),
        "aud_trailing_slash": params("aud_trailing_slash", aud=cfg["fhirBase"] + "/"),
        "missing_pkce": params("missing_pkce", code_challenge=None, code_challenge_method=None),
        "plain_pkce": params("plain_pkce", code_challenge=secrets.token_urlsafe(48), code_challenge_method="plain"),
        "unknown_launch": ehr("unknown_launch", "nope"),
        "expired_launch": ehr("expired_launch", launches["expired"]),
        "other_client_launch": ehr("other_client_launch", launches["otherClient"]),
        "bad_response_type": params("bad_response_type", response_type="token"),
    }
    for name, case in cases.items():
        try:
            out[name] = probe(cfg, case)
        except Exception as error:
            out[name] = {"exception": describe(error)}
    out["post_form"] = probe(cfg, params("post_form"), method="POST")

    # A launch is good once: one full authorization (and its redemption), then it is refused.
    result, verifier, _ = raw_authorization(cfg, conf, scopes["ehrApp"], cfg["clinician"], launch=launches["reuse"])
    first = {"status": result["status"], "has_code": bool(result["query"]["code"]), "pages": result["pages"],
             "error": result["query"]["error"]}
    if result["query"]["code"]:
        first["token_status"] = exchange(cfg, conf, result["query"]["code"], verifier).status_code
    out["reuse_first"] = first
    out["reused_launch"] = probe(cfg, ehr("reused_launch", launches["reuse"]))


def consent(cfg, out):
    public, scope, user = cfg["public"], cfg["scopes"]["patientApp"], cfg["patientUser"]
    result, response = code_and_token(cfg, public, scope, user, untick=("patient/Observation.rs",))
    out["unticked_pages"], out["unticked_token_status"] = result["pages"], response.status_code
    out["unticked_scope"] = body(response).get("scope")

    result, _, state = raw_authorization(cfg, public, scope, user, decision="deny")
    out["deny"] = {"status": result["status"], "error": result["query"]["error"], "state_ok": result["query"]["state"] == state,
                   "has_code": bool(result["query"]["code"]), "pages": result["pages"]}


def deleted_user(cfg, out):
    public, doomed = cfg["public"], cfg["doomedUser"]
    _, response = code_and_token(cfg, public, cfg["scopes"]["patientApp"], doomed)
    token = body(response)
    out["before"] = {"status": response.status_code, "has_refresh": "refresh_token" in token, "patient": token.get("patient")}
    deleted = requests.delete(f"{cfg['base']}/manage/organizations/{cfg['orgId']}/users/{doomed['id']}",
                              headers={"Authorization": "Bearer " + cfg["adminToken"]}, timeout=TIMEOUT)
    out["delete_status"] = deleted.status_code
    out["after"] = outcome(refresh(cfg, public, token["refresh_token"]))
    out["active_after_delete"] = introspect(cfg, public, token["access_token"]).get("active")


def revocation(cfg, out):
    """RFC 7009 with a refresh token: its family ends, access tokens included; introspection carries the context before."""
    public, user = cfg["public"], cfg["patientUser"]
    _, response = code_and_token(cfg, public, cfg["scopes"]["patientApp"], user)
    token = body(response)
    out["before"] = introspect(cfg, public, token["access_token"])
    revoked = client_post(cfg, "/oauth2/revoke", public, [("token", token["refresh_token"]), ("token_type_hint", "refresh_token")])
    out["revoke_status"] = revoked.status_code
    out["active_after"] = introspect(cfg, public, token["access_token"]).get("active")
    out["refresh_after"] = outcome(refresh(cfg, public, token["refresh_token"]))


def lockout(cfg, out):
    public, scope = cfg["public"], cfg["scopes"]["patientApp"]

    def open_sign_in():
        params = authorize_params(cfg, public, scope, secrets.token_urlsafe(8), pkce()[1])
        session = requests.Session()
        return session, session.get(cfg["base"] + "/oauth2/authorize", params=params, allow_redirects=False, timeout=TIMEOUT)

    def sign_in(session, page_response, username, password):
        form = authorize_form(parse_page(page_response.text)) if page_response.status_code in (200, 401) else None
        if form is None or step_of(form) != "sign-in":
            raise RuntimeError(f"no sign-in form (HTTP {page_response.status_code})")
        url = urllib.parse.urljoin(page_response.url, form["action"])
        response = session.post(url, data=fill(form, "sign-in", username, password), allow_redirects=False, timeout=TIMEOUT)
        errors = parse_page(response.text).errors if "html" in response.headers.get("Content-Type", "") else []
        return response, (errors[0] if errors else None)

    lock = cfg["lockUser"]
    session, page = open_sign_in()
    statuses = []
    for attempt in range(10):
        response, message = sign_in(session, page, lock["username"], "wrong-" + secrets.token_hex(6))
        statuses.append(response.status_code)
        if attempt == 0:
            out["wrong_status"], out["wrong_message"] = response.status_code, message
        has_form = response.status_code == 401 and authorize_form(parse_page(response.text)) is not None
        session, page = (session, response) if has_form else open_sign_in()
    out["wrong_statuses"] = statuses

    response, message = sign_in(*open_sign_in(), lock["username"], lock["password"])
    out["locked_status"], out["locked_message"] = response.status_code, message
    out["locked_location"] = response.headers.get("Location")

    response, message = sign_in(*open_sign_in(), "nobody-" + secrets.token_hex(6), "whatever-" + secrets.token_hex(4))
    out["unknown_status"], out["unknown_message"] = response.status_code, message


def discovery(cfg, out):
    base, fhir = cfg["base"], cfg["fhirBase"]
    documents = {
        "fhir_smart_configuration": (fhir + "/.well-known/smart-configuration", "application/json"),
        "smart_configuration": (base + "/.well-known/smart-configuration", "application/json"),
        "openid_configuration": (base + "/.well-known/openid-configuration", "application/json"),
        "oauth_authorization_server": (base + "/.well-known/oauth-authorization-server", "application/json"),
        "metadata": (fhir + "/metadata", "application/fhir+json"),
    }
    fetched = {}
    for name, (url, accept) in documents.items():
        try:
            response = requests.get(url, headers={"Accept": accept}, timeout=TIMEOUT)
            out[name] = {"status": response.status_code, "content_type": response.headers.get("Content-Type")}
            fetched[name] = body(response)
        except Exception as error:
            out[name] = {"exception": describe(error)}
            fetched[name] = {}
    smart = fetched["fhir_smart_configuration"]
    for key in ("capabilities", "code_challenge_methods_supported", "grant_types_supported", "authorization_endpoint"):
        out[key] = smart.get(key)
    oidc = fetched["openid_configuration"]
    out["id_token_signing_alg_values_supported"] = oidc.get("id_token_signing_alg_values_supported")
    out["issuer"] = oidc.get("issuer")
    try:
        from fhirclient.models.capabilitystatement import CapabilityStatement

        CapabilityStatement(fetched["metadata"], strict=True)
        out["metadata_strict_ok"] = True
    except Exception as error:
        out["metadata_strict_ok"] = False
        out["metadata_strict_error"] = describe(error)


# Lockout last: its failed sign-ins should not be counted against anything the others do.
SCENARIOS = [
    ("discovery", discovery), ("fhirclient_patient", fhirclient_patient), ("fhirclient_clinician", fhirclient_clinician),
    ("picker_foreign", picker_foreign), ("authlib_ehr", authlib_ehr), ("refresh_rules", refresh_rules),
    ("code_rules", code_rules), ("requests_oauthlib_plain", requests_oauthlib_plain),
    ("authorize_refusals", authorize_refusals), ("consent", consent), ("deleted_user", deleted_user), ("revocation", revocation),
    ("lockout", lockout),
]


def main():
    with open(sys.argv[1]) as file:
        cfg = json.load(file)
    cfg["base"], cfg["fhirBase"] = cfg["base"].rstrip("/"), cfg["fhirBase"].rstrip("/")
    results = {}
    for name, scenario in SCENARIOS:
        out = results[name] = {}
        try:
            scenario(cfg, out)
        except Exception as error:
            log(f"--- {name} failed")
            traceback.print_exc(file=sys.stderr)
            out["error"] = describe(error)
        log(f"{name}: {json.dumps(out, default=str)}")
    print(json.dumps(results, default=str, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
