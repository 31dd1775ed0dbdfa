"""A small FHIR R4 server over its own data, for Caregate's gateway mode to stand in front of.

Usage: fhir_upstream.py            (prints "listening on PORT" once it accepts connections)

It knows nothing of Caregate's rules: any caller reads and writes anything. The test loads
its data with POST /_load (a JSON array of resources) and can make it misbehave with POST
/_ignore (a JSON array of search parameters it then ignores, as a careless server would);
those are the only paths outside /fhir/R4. Everything else reaches it through Caregate. It serves, at /fhir/R4:
  read                GET  /{type}/{id}           404 OperationOutcome when unknown or deleted
  search              GET  /{type}?...            _id, patient, subject, category, code, date,
                                                  recorded-date, status, clinical-status (a comma
                                                  is OR, a repeated parameter AND), _count
                                                  (default 20), _offset, _include, _revinclude;
                                                  any other parameter is a 400 naming it;
                                                  searchset Bundles with total and absolute
                                                  self/next/previous links
  create              POST /{type}                201, Location .../_history/1
  update              PUT  /{type}/{id}           version + 1; If-Match honoured (412)
  delete              DELETE /{type}/{id}         204, or 404 when unknown
Answers are gzip-compressed when the request's Accept-Encoding takes gzip.
"""
import datetime
import gzip
import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

LOCK = threading.Lock()
DATA = {}  # type -> {id: resource}
IGNORED = set()  # search parameters to ignore
BASE = ""

PARAMETERS = {"_id", "patient", "subject", "category", "code", "date", "recorded-date", "status", "clinical-status",
              "_count", "_offset", "_include", "_revinclude", "_format"}


def outcome(code, text):
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "details": {"text": text}}]}


def patient_id(reference):
    """The id of a Patient reference in any spelling, or None."""
    parts = reference.split("/")
    if len(parts) == 1:
        return reference
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


def references(value, found):
    """Every reference string anywhere in a resource."""
    if isinstance(value, dict):
        for key, member in value.items():
            if key == "reference" and isinstance(member, str):
                found.append(member)
            else:
                references(member, found)
    elif isinstance(value, list):
        for item in value:
            references(item, found)
    return found


def patients_of(resource):
    """The patients the `patient` search parameter finds a resource by. Written apart from
    fhir_compartment.py's, which is the test's judge of the answers, not the server's rule."""
    kind = resource["resourceType"]
    if kind == "Patient":
        return {resource["id"]}
    refs = []
    if kind in ("Observation", "Condition", "Encounter"):
        refs.append(resource.get("subject", {}).get("reference", ""))
    elif kind == "AllergyIntolerance":
        refs.append(resource.get("patient", {}).get("reference", ""))
    elif kind == "Appointment":
        refs += [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
    return {ref.split("/", 1)[1] for ref in refs if ref.startswith("Patient/")}


def codings(value):
    if isinstance(value, list):
        return [c for item in value for c in codings(item)]
    if isinstance(value, dict):
        return value.get("coding", [])
    return []


def field_values(resource, name):
    """The values a search parameter compares, as (system, code) pairs or date strings."""
    if name in ("category",):
        category = resource.get("category", [])
        if resource["resourceType"] == "AllergyIntolerance":
            return [(None, c) for c in category]
        return [(c.get("system"), c.get("code")) for c in codings(category)]
    if name == "code":
        return [(c.get("system"), c.get("code")) for c in codings(resource.get("code"))]
    if name in ("status", "clinical-status"):
        if "clinicalStatus" in resource:
            return [(None, c.get("code")) for c in codings(resource["clinicalStatus"])]
        return [(None, resource.get("status"))]
    if name in ("date", "recorded-date"):
        kind = resource["resourceType"]
        value = {"Observation": resource.get("effectiveDateTime"), "Condition": resource.get("recordedDate"),
                 "AllergyIntolerance": resource.get("recordedDate"), "Encounter": resource.get("period", {}).get("start"),
                 "Appointment": resource.get("start")}.get(kind)
        return [value] if value else []
    return []


def interval(text):
    """[start, end) of a FHIR date or dateTime, as UTC datetimes."""
    m = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?", text)
    if not m:
        raise ValueError(text)
    year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
    start = datetime.datetime(year, month, day, tzinfo=datetime.timezone.utc)
    if m[4]:
        start = start.replace(hour=int(m[4]), minute=int(m[5]), second=int(m[6] or 0))
        if m[7] and m[7] != "Z":
            sign = 1 if m[7][0] == "+" else -1
            start -= sign * datetime.timedelta(hours=int(m[7][1:3]), minutes=int(m[7][4:6]))
        return start, start + datetime.timedelta(seconds=1 if m[6] else 60)
    if m[3]:
        return start, start + datetime.timedelta(days=1)
    if m[2]:
        return start, (start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1))
    return start, start.replace(year=year + 1)


def matches(resource, name, value):
    """Whether the resource matches one occurrence of a search parameter (commas are OR)."""
    options = value.split(",")
    if name == "_id":
        return resource["id"] in options
    if name in ("patient", "subject"):
        wanted = {patient_id(option) for option in options}
        return bool(patients_of(resource) & wanted)
    if name in ("date", "recorded-date"):
        prefix, text = ("eq", value)
        if value[:2] in ("eq", "ne", "gt", "lt", "ge", "le"):
            prefix, text = value[:2], value[2:]
        low, high = interval(text)
        for date in field_values(resource, name):
            at = interval(date)[0]
            if {"eq": low <= at < high, "ne": not low <= at < high, "gt": at >= high, "lt": at < low,
                    "ge": at >= low, "le": at < high}[prefix]:
                return True
        return False
    values = field_values(resource, name)
    for option in options:
        system, _, code = option.rpartition("|") if "|" in option else (None, "", option)
        for have_system, have_code in values:
            if have_code == code and (system is None or system == "" and have_system is None or system == have_system):
                return True
    return False


def include_targets(resource, spec):
    """What `_include=Type:param[:Target]` brings from one resource: referenced resources."""
    parts = spec.split(":")
    target = parts[2] if len(parts) > 2 else {"patient": "Patient", "subject": "Patient", "practitioner": "Practitioner",
                                              "performer": "Practitioner", "location": "Location"}.get(parts[1])
    found = []
    for reference in references(resource, []):
        bits = reference.split("/")
        if len(bits) >= 2 and (target is None or bits[-2] == target) and bits[-1] in DATA.get(bits[-2], {}):
            found.append(DATA[bits[-2]][bits[-1]])
    return found


def search(kind, query):
    names = [name for name, _ in query]
    unknown = sorted({name for name in names if name not in PARAMETERS})
    if unknown:
        return 400, outcome("not-supported", "Unknown search parameters: " + ", ".join(f'"{n}"' for n in unknown))
    count, offset, includes, revincludes, filters = 20, 0, [], [], []
    for name, value in query:
        if name == "_count":
            count = int(value)
        elif name == "_offset":
            offset = int(value)
        elif name == "_include":
            includes.append(value)
        elif name == "_revinclude":
            revincludes.append(value)
        elif name != "_format" and name not in IGNORED:
            filters.append((name, value))
    try:
        with LOCK:
            found = [r for r in DATA.get(kind, {}).values() if all(matches(r, n, v) for n, v in filters)]
    except ValueError as error:
        return 400, outcome("invalid", f"not a FHIR date: {error}")
    found.sort(key=lambda r: r["id"])
    page = found[offset:offset + count]
    entries = [{"fullUrl": f"{BASE}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in page]
    seen = {(kind, r["id"]) for r in page}
    extra = []
    with LOCK:
        for spec in includes:
            if spec.split(":")[0] == kind:
                extra += [t for r in page for t in include_targets(r, spec)]
        for spec in revincludes:
            source = spec.split(":")[0]
            for candidate in DATA.get(source, {}).values():
                if any(t["resourceType"] == kind and (kind, t["id"]) in {(kind, r["id"]) for r in page} for t in include_targets(candidate, spec)):
                    extra.append(candidate)
    for resource in extra:
        key = (resource["resourceType"], resource["id"])
        if key not in seen:
            seen.add(key)
            entries.append({"fullUrl": f"{BASE}/{key[0]}/{key[1]}", "resource": resource, "search": {"mode": "include"}})

    def link(relation, at):
        items = [(n, v) for n, v in query if n != "_offset"] + ([("_offset", str(at))] if at else [])
        return {"relation": relation, "url": f"{BASE}/{kind}" + ("?" + urlencode(items) if items else "")}

    links = [link("self", offset)]
    if count and offset + len(page) < len(found):
        links.append(link("next", offset + count))
    if offset and count:
        links.append(link("previous", max(0, offset - count)))
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links}
    if entries:
        bundle["entry"] = entries
    return 200, bundle


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
            # Compressed when the client takes it, as real FHIR servers do.
            if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                data = gzip.compress(data)
                self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def route(self):
        url = urlsplit(self.path)
        if not url.path.startswith("/fhir/R4/"):
            return None, None, None
        parts = url.path[len("/fhir/R4/"):].split("/")
        return parts[0], parts[1] if len(parts) > 1 else None, parse_qsl(url.query, keep_blank_values=True)

    def do_GET(self):
        kind, ident, query = self.route()
        if kind is None:
            return self.answer(404, outcome("not-found", "unknown path"))
        if ident is None:
            return self.answer(*search(kind, query))
        with LOCK:
            resource = DATA.get(kind, {}).get(ident)
        if resource is None:
            return self.answer(404, outcome("not-found", f"{kind}/{ident} is not here"))
        self.answer(200, resource, [("ETag", f'W/"{resource["meta"]["versionId"]}"')])

    def do_POST(self):
        if self.path == "/_load":
            resources = self.body()
            with LOCK:
                DATA.clear()
                for resource in resources:
                    resource.setdefault("meta", {})["versionId"] = resource.get("meta", {}).get("versionId", "1")
                    DATA.setdefault(resource["resourceType"], {})[resource["id"]] = resource
            return self.answer(204)
        if self.path == "/_ignore":
            IGNORED.clear()
            IGNORED.update(self.body())
            return self.answer(204)
        kind, ident, _ = self.route()
        resource = self.body()
        if kind is None or ident is not None or not isinstance(resource, dict) or resource.get("resourceType") != kind:
            return self.answer(400, outcome("invalid", "POST /fhir/R4/{type} with a resource of that type"))
        resource["id"] = "up-" + uuid.uuid4().hex[:16]
        resource["meta"] = {"versionId": "1", "lastUpdated": now()}
        with LOCK:
            DATA.setdefault(kind, {})[resource["id"]] = resource
        self.answer(201, resource, [("Location", f"{BASE}/{kind}/{resource['id']}/_history/1"), ("ETag", 'W/"1"')])

    def do_PUT(self):
        kind, ident, _ = self.route()
        resource = self.body()
        if not ident or not isinstance(resource, dict) or resource.get("resourceType") != kind or resource.get("id") != ident:
            return self.answer(400, outcome("invalid", "PUT /fhir/R4/{type}/{id} with that resource"))
        with LOCK:
            current = DATA.get(kind, {}).get(ident)
            expected = self.headers.get("If-Match")
            if expected and (current is None or expected != f'W/"{current["meta"]["versionId"]}"'):
                return self.answer(412, outcome("conflict", f"{kind}/{ident} is not at version {expected}"))
            version = str(int(current["meta"]["versionId"]) + 1) if current else "1"
            resource["meta"] = {"versionId": version, "lastUpdated": now()}
            DATA.setdefault(kind, {})[ident] = resource
        self.answer(200 if current else 201, resource, [("ETag", f'W/"{version}"')])

    def do_DELETE(self):
        kind, ident, _ = self.route()
        with LOCK:
            current = DATA.get(kind, {}).get(ident)
            expected = self.headers.get("If-Match")
            if current is None:
                return self.answer(404, outcome("not-found", f"{kind}/{ident} is not here"))
            if expected and expected != f'W/"{current["meta"]["versionId"]}"':
                return self.answer(412, outcome("conflict", f"{kind}/{ident} is not at version {expected}"))
            del DATA[kind][ident]
        self.answer(204)


def main():
    global BASE
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    BASE = f"http://127.0.0.1:{server.server_address[1]}/fhir/R4"
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
