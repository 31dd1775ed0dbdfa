"""FHIR R4 confinement rules (SPEC §8) against a running Caregate, as a SMART app sees them.

Usage: fhir_compartment.py CONFIG_JSON_PATH

The Swift test starts Caregate (built-in FHIR, or the gateway in front of an upstream FHIR
server, fhir_upstream.py: "gateway" is true in the config), creates a clinic with its sample data, a patient user, a clinician, a public SMART
client and an API key, and writes them to CONFIG_JSON_PATH. This script obtains launch tokens
the way an app does (the sign-in and consent pages, driven as a browser posts them: see
smart_launch.py) and runs one scenario per rule, whatever the others did. Every resource,
Bundle and OperationOutcome the server answers is validated with the fhir.resources R4B
models. It prints ONE line of JSON as the last line of stdout: one key per scenario, each an
object of observations ("error" set when the scenario raised). The Swift test asserts on it.
"""
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import requests  # noqa: E402
from smart_launch import TIMEOUT, describe, exchange, log, raw_authorization  # noqa: E402

VALIDATED = {"count": 0, "failures": []}
# Every link or fullUrl an answer gave that does not point at the FHIR base the app talks to.
ELSEWHERE = []


def validate(resource):
    """Validates one resource (recursively: a Bundle's entries too) with the R4B models."""
    from fhir.resources.R4B import get_fhir_model_class

    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    try:
        get_fhir_model_class(kind).model_validate(resource)
        VALIDATED["count"] += 1
    except Exception as error:  # noqa: BLE001 (any model error is a finding)
        VALIDATED["failures"].append(f"{kind}/{resource.get('id') if isinstance(resource, dict) else '?'}: {str(error)[:400]}")
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            if "resource" in entry:
                validate(entry["resource"])


class Caller:
    """One credential: a SMART access token, or an API key with its clinic header."""

    def __init__(self, cfg, token, organization=None):
        self.cfg, self.headers = cfg, {"Authorization": "Bearer " + token, "Accept": "application/fhir+json"}
        if organization:
            self.headers["X-Organization-Id"] = organization

    def get(self, path, **params):
        url = path if path.startswith("http") else self.cfg["fhirBase"] + "/" + path
        response = requests.get(url, headers=self.headers, params=params or None, timeout=TIMEOUT)
        if response.headers.get("Content-Type", "").startswith("application/fhir+json"):
            validate(response.json())
        return response

    def send(self, method, path, resource):
        headers = dict(self.headers, **{"Content-Type": "application/fhir+json"})
        response = requests.request(method, self.cfg["fhirBase"] + "/" + path, headers=headers, data=json.dumps(resource), timeout=TIMEOUT)
        if response.content and response.headers.get("Content-Type", "").startswith("application/fhir+json"):
            validate(response.json())
        return response

    def search_entries(self, kind, **params):
        """Every entry a search returns, following its next links; (entries, statuses)."""
        entries, statuses, url = [], [], kind
        for _ in range(100):
            response = self.get(url, **(params if url == kind else {}))
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
            bundle = response.json()
            entries += bundle.get("entry", [])
            urls = [link["url"] for link in bundle.get("link", [])] + [entry.get("fullUrl", "") for entry in bundle.get("entry", [])]
            ELSEWHERE.extend(u for u in urls if not u.startswith(self.cfg["fhirBase"] + "/"))
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            if url is None:
                break
        return entries, statuses

    def search_all(self, kind, **params):
        """Every resource a search returns, following its next links; (resources, statuses)."""
        entries, statuses = self.search_entries(kind, **params)
        return [entry["resource"] for entry in entries], statuses


def launch_token(cfg, user, scope):
    """A standalone launch through the pages; the token endpoint's answer as JSON."""
    result, verifier, _ = raw_authorization(cfg, cfg["public"], scope, user)
    code = result["query"]["code"]
    if not code:
        return {"no_code": result}
    response = exchange(cfg, cfg["public"], code, verifier)
    return response.json() if response.ok else {"token_status": response.status_code, "body": response.text[:300]}


def patients_of(resource):
    """The patients a compartment resource belongs to."""
    kind = resource["resourceType"]
    if kind == "Patient":
        return {resource["id"]}
    refs = []
    if kind in ("Observation", "Condition", "Encounter"):
        refs.append(resource.get("subject", {}).get("reference", ""))
    if kind == "AllergyIntolerance":
        refs.append(resource.get("patient", {}).get("reference", ""))
    if kind == "Appointment":
        refs += [p.get("actor", {}).get("reference", "") for p in resource.get("participant", [])]
    return {ref.split("/", 1)[1] for ref in refs if ref.startswith("Patient/")}


def outcome_of(response):
    body = response.json() if response.headers.get("Content-Type", "").startswith("application/fhir+json") else {}
    issue = (body.get("issue") or [{}])[0]
    return {
        "status": response.status_code, "resourceType": body.get("resourceType"), "code": issue.get("code"),
        "text": (issue.get("details") or {}).get("text"), "trace_id": response.headers.get("X-Trace-Id"),
        "www_authenticate": response.headers.get("WWW-Authenticate"),
    }


COMPARTMENT_TYPES = ["Patient", "Observation", "Condition", "AllergyIntolerance", "Encounter", "Appointment"]


def observation(patient, category="vital-signs", code="8867-4", other_reference=None):
    resource = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Heart rate"}]},
        "subject": {"reference": "Patient/" + patient}, "effectiveDateTime": "2026-11-30T08:15:00Z",
        "valueQuantity": {"value": 71.5, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    if other_reference:
        resource["performer"] = [{"reference": other_reference}]
    return resource


# MARK: Scenarios


def compartment(cfg, out, state):
    caller, me = state["patient"], cfg["patientUser"]["patientId"]
    searches = {}
    for kind in COMPARTMENT_TYPES:
        resources, statuses = caller.search_all(kind)
        owners = set().union(*(patients_of(r) for r in resources)) if resources else set()
        searches[kind] = {"count": len(resources), "statuses": sorted(set(statuses)), "owners": sorted(owners)}
    out["searches"] = searches
    out["me"] = me
    # The same searches naming the patient explicitly, by each spelling of the reference.
    named = {}
    for kind, param in [("Observation", "patient"), ("Observation", "subject"), ("Condition", "subject"), ("Encounter", "patient")]:
        for value in [me, "Patient/" + me, cfg["fhirBase"] + "/Patient/" + me]:
            response = caller.get(kind, **{param: value})
            named[f"{kind}?{param}={value[-12:]}"] = response.status_code
    out["named_self"] = named


def reference_types(cfg, out, state):
    caller = state["patient"]
    found = {}
    for kind in ["Practitioner", "Location", "Organization"]:
        resources, statuses = caller.search_all(kind)
        read = caller.get(kind + "/" + resources[0]["id"]).status_code if resources else None
        found[kind] = {"count": len(resources), "statuses": sorted(set(statuses)), "read": read}
    out["types"] = found


def other_patient(cfg, out, state):
    caller, other = state["patient"], cfg["otherPatient"]
    out["searches"] = {
        "Observation?patient=B": outcome_of(caller.get("Observation", patient=other)),
        "Observation?subject=Patient/B": outcome_of(caller.get("Observation", subject="Patient/" + other)),
        "Condition?patient=A,B": outcome_of(caller.get("Condition", patient=cfg["patientUser"]["patientId"] + "," + other)),
        "Patient?_id=B": outcome_of(caller.get("Patient", _id=other)),
    }
    # B's resources read by id answer exactly as ids that do not exist.
    key = state["key"]
    reads = {}
    for kind in ["Patient", "Observation", "Condition", "AllergyIntolerance", "Encounter", "Appointment"]:
        resources, _ = key.search_all(kind, **({"_id": other} if kind == "Patient" else {"patient": other}))
        if not resources:
            reads[kind] = {"missing_fixture": True}
            continue
        foreign = caller.get(kind + "/" + resources[0]["id"])
        missing = caller.get(kind + "/" + resources[0]["id"][:-6] + "000000")
        a, b = outcome_of(foreign), outcome_of(missing)
        reads[kind] = {
            "foreign": a["status"], "missing": b["status"],
            "same": a["status"] == b["status"] and a["code"] == b["code"]
            and a["text"].replace(resources[0]["id"], "ID") == b["text"].replace(resources[0]["id"][:-6] + "000000", "ID"),
        }
    out["reads"] = reads


def refused_operations(cfg, out, state):
    caller, me = state["patient"], cfg["patientUser"]["patientId"]
    out["everything"] = outcome_of(caller.get("Patient/" + me + "/$everything"))
    out["export"] = outcome_of(caller.get("$export"))
    out["patient_export"] = outcome_of(caller.get("Patient/$export"))
    if cfg.get("gateway"):
        # In front of an upstream, _include and _revinclude reach the upstream, and every
        # resource they bring is checked: the key (clinic-wide) shows what the upstream brings.
        probes = [
            ("include", caller, "Observation", {"_include": "Observation:patient"}),
            ("revinclude", caller, "Patient", {"_revinclude": "Observation:patient"}),
            ("include_practitioner", caller, "Encounter", {"_include": "Encounter:practitioner"}),
            ("revinclude_foreign", caller, "Practitioner", {"_revinclude": "Encounter:practitioner"}),
            ("revinclude_unscoped_type", state["lab"], "Patient", {"_revinclude": "Condition:patient"}),
        ]
        for name, who, kind, params in probes:
            entries, statuses = who.search_entries(kind, **params)
            included = [e["resource"] for e in entries if e.get("search", {}).get("mode") == "include"]
            key_entries, _ = state["key"].search_entries(kind, **params)
            key_included = [e["resource"] for e in key_entries if e.get("search", {}).get("mode") == "include"]
            out[name] = {
                "statuses": sorted(set(statuses)), "included": len(included),
                "owners": sorted(set().union(*(patients_of(e["resource"]) for e in entries if e["resource"]["resourceType"] in COMPARTMENT_TYPES))),
                "key_included": len(key_included),
                "key_owners": len(set().union(*(patients_of(r) for r in key_included if r["resourceType"] in COMPARTMENT_TYPES))),
            }
    else:
        out["include"] = outcome_of(caller.get("Observation", _include="Observation:patient"))
        out["revinclude"] = outcome_of(caller.get("Patient", _revinclude="Observation:patient"))
    out["has"] = outcome_of(caller.get("Patient", **{"_has:Observation:patient:code": "8867-4"}))
    out["chained"] = outcome_of(caller.get("Observation", **{"patient.name": "x"}))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(me), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation(cfg["otherPatient"]), "request": {"method": "POST", "url": "Observation"}},
    ]}
    response = requests.post(cfg["fhirBase"], headers=dict(caller.headers, **{"Content-Type": "application/fhir+json"}), data=json.dumps(bundle), timeout=TIMEOUT)
    out["bundle_with_B"] = outcome_of(response)


def writes(cfg, out, state):
    caller, me, other = state["patient"], cfg["patientUser"]["patientId"], cfg["otherPatient"]
    out["create_for_B"] = outcome_of(caller.send("POST", "Observation", observation(other)))
    out["create_referencing_B"] = outcome_of(caller.send("POST", "Observation", observation(me, other_reference="Patient/" + other)))
    out["create_referencing_B_versioned"] = outcome_of(caller.send("POST", "Observation", observation(me, other_reference="Patient/" + other + "/_history/1")))
    by_identifier = observation(me)
    by_identifier["performer"] = [{"type": "Patient", "identifier": {"system": "urn:example", "value": "x"}}]
    out["create_referencing_identifier"] = outcome_of(caller.send("POST", "Observation", by_identifier))
    created = caller.send("POST", "Observation", observation(me))
    out["create_own"] = created.status_code
    out["location"] = created.headers.get("Location")
    if created.status_code == 201:
        resource = created.json()
        out["read_back"] = caller.get("Observation/" + resource["id"]).status_code
        moved = dict(resource, subject={"reference": "Patient/" + other})
        out["move_to_B"] = outcome_of(caller.send("PUT", "Observation/" + resource["id"], moved))
        changed = dict(resource, status="amended")
        updated = caller.send("PUT", "Observation/" + resource["id"], changed)
        out["update_own"] = updated.status_code
        out["version_after_update"] = updated.json().get("meta", {}).get("versionId") if updated.ok else None
        out["delete_own"] = caller.send("DELETE", "Observation/" + resource["id"], {}).status_code
        out["read_after_delete"] = caller.get("Observation/" + resource["id"]).status_code
    # B's resource cannot be updated or deleted either: it answers as one that does not exist.
    theirs, _ = state["key"].search_all("Observation", patient=other, _count="1")
    if theirs:
        target = theirs[0]
        out["update_B"] = outcome_of(caller.send("PUT", "Observation/" + target["id"], dict(target, subject={"reference": "Patient/" + me})))
        out["delete_B"] = outcome_of(caller.send("DELETE", "Observation/" + target["id"], {}))


def granular(cfg, out, state):
    caller, me = state["lab"], cfg["patientUser"]["patientId"]
    resources, statuses = caller.search_all("Observation")
    out["search"] = {"count": len(resources), "statuses": sorted(set(statuses)),
                     "categories": sorted({c["coding"][0]["code"] for r in resources for c in r.get("category", [])})}
    vital, _ = state["patient"].search_all("Observation", category="vital-signs")
    lab, _ = state["patient"].search_all("Observation", category="laboratory")
    out["read_vital"] = outcome_of(caller.get("Observation/" + vital[0]["id"])) if vital else None
    out["read_lab"] = caller.get("Observation/" + lab[0]["id"]).status_code if lab else None
    out["search_vital"] = caller.get("Observation", category="vital-signs").json().get("total")
    out["create_lab"] = outcome_of(caller.send("POST", "Observation", observation(me, category="laboratory", code="2339-0")))


def no_patient_context(cfg, out, state):
    out["metadata"] = requests.get(cfg["fhirBase"] + "/metadata", timeout=TIMEOUT).status_code
    caller = Caller(cfg, cfg["noPatientToken"])
    out["routes"] = {path: caller.get(path).status_code for path in ["Patient", "Observation", "Practitioner", "Observation/x", "$export"]}


def errors(cfg, out, state):
    out["no_token"] = outcome_of(requests.get(cfg["fhirBase"] + "/Observation", timeout=TIMEOUT))
    out["bad_token"] = outcome_of(requests.get(cfg["fhirBase"] + "/Observation", headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT))
    out["insufficient"] = outcome_of(state["lab"].get("Condition"))
    out["unsupported"] = outcome_of(state["key"].get("Observation", name="x", _sort="date"))
    out["bad_date"] = outcome_of(state["key"].get("Observation", date="yesterday"))
    # A value's limit counts characters, as the document's maxLength does: 2,048 two-byte ones pass.
    out["longest_value"] = outcome_of(state["key"].get("Observation", code="\u00e9" * 2048))
    out["too_long_value"] = outcome_of(state["key"].get("Observation", code="\u00e9" * 2049))


def clinic_wide(cfg, out, state):
    key = state["key"]
    totals = {kind: key.get(kind, _count="0").json().get("total") for kind in COMPARTMENT_TYPES + ["Practitioner", "Location", "Organization"]}
    out["totals"] = totals
    out["foreign_patient"] = key.get("Patient/" + cfg["foreignPatient"]).status_code
    out["foreign_search"] = key.get("Observation", patient=cfg["foreignPatient"]).json().get("total")
    patients, _ = key.search_all("Patient", _count="17")
    out["paged_patients"] = len({p["id"] for p in patients})
    out["date_ge"] = key.get("Observation", date="ge2026-07", _count="0").json().get("total")
    out["date_lt"] = key.get("Observation", date="lt2026-07", _count="0").json().get("total")
    out["code"] = key.get("Observation", code="http://loinc.org|8867-4", _count="0").json().get("total")
    out["code_wrong_system"] = key.get("Observation", code="http://snomed.info/sct|8867-4", _count="0").json().get("total")
    out["status"] = key.get("Condition", **{"clinical-status": "active"}, _count="0").json().get("total")


def clinician_user(cfg, out, state):
    """user/*.rs for a clinician: what the clinician may see, the clinic."""
    result, verifier, _ = raw_authorization(cfg, cfg["public"], cfg["scopes"]["clinician"], cfg["clinician"])
    out["pages"] = result["pages"]
    token = exchange(cfg, cfg["public"], result["query"]["code"], verifier).json()
    caller = Caller(cfg, token["access_token"])
    out["observations"] = caller.get("Observation", _count="0").json().get("total")
    out["patients"] = caller.get("Patient", _count="0").json().get("total")
    out["foreign_patient"] = caller.get("Patient/" + cfg["foreignPatient"]).status_code
    out["own_record"] = caller.get("Practitioner/" + cfg["clinician"]["providerId"]).status_code


def fhirclient_reads(cfg, out, state):
    """fhirclient's own models read the patient and search its Observations with the launch token."""
    from fhirclient import server as fhir_server
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    server = fhir_server.FHIRServer(None, base_uri=cfg["fhirBase"])
    server.auth = type("Auth", (), {"can_sign_headers": lambda self: True,
                                    "signed_headers": lambda self, headers: dict(headers, Authorization="Bearer " + state["patient_token"]),
                                    "reset": lambda self: None})()
    me = cfg["patientUser"]["patientId"]
    patient = Patient.read(me, server)
    out["patient_id"] = patient.id
    out["family"] = patient.name[0].family if patient.name else None
    observations = Observation.where(struct={"patient": me}).perform_resources(server)
    out["observations"] = len(observations)
    out["observation_subjects"] = sorted({o.subject.reference for o in observations})


def ignored_narrowing(cfg, out, state):
    """Gateway only: an upstream that ignores the patient parameter the gateway adds answers
    every patient's Observations; none of another patient's pass, nor a total counting them."""
    requests.post(cfg["upstream"] + "/_ignore", json=["patient", "_id"], timeout=TIMEOUT).raise_for_status()
    try:
        response = state["patient"].get("Observation", _count="200")
        bundle = response.json()
        out["status"] = response.status_code
        out["count"] = len(bundle.get("entry", []))
        out["owners"] = sorted(set().union(*(patients_of(e["resource"]) for e in bundle.get("entry", []))))
        out["total"] = bundle.get("total")
    finally:
        requests.post(cfg["upstream"] + "/_ignore", json=[], timeout=TIMEOUT).raise_for_status()


SCENARIOS = [
    ("compartment", compartment), ("reference_types", reference_types), ("other_patient", other_patient),
    ("refused_operations", refused_operations), ("writes", writes), ("granular", granular),
    ("no_patient_context", no_patient_context), ("errors", errors), ("clinic_wide", clinic_wide),
    ("clinician_user", clinician_user), ("fhirclient_reads", fhirclient_reads),
]


def main():
    with open(sys.argv[1]) as file:
        cfg = json.load(file)
    cfg["base"], cfg["fhirBase"] = cfg["base"].rstrip("/"), cfg["fhirBase"].rstrip("/")
    results = {}
    tokens = {}
    for name, user, scope in [("patient", cfg["patientUser"], cfg["scopes"]["patient"]), ("lab", cfg["patientUser"], cfg["scopes"]["lab"])]:
        try:
            tokens[name] = launch_token(cfg, user, scope)
        except Exception as error:  # noqa: BLE001
            tokens[name] = {"error": describe(error)}
    results["tokens"] = {name: {k: v for k, v in token.items() if k not in ("access_token", "refresh_token", "id_token")} for name, token in tokens.items()}
    state = {"tokens": tokens, "key": Caller(cfg, cfg["key"], cfg["orgHeader"])}
    for name in ("patient", "lab"):
        if "access_token" in tokens[name]:
            state[name] = Caller(cfg, tokens[name]["access_token"])
    state["patient_token"] = tokens["patient"].get("access_token", "")
    for name, scenario in SCENARIOS + ([("ignored_narrowing", ignored_narrowing)] if cfg.get("gateway") else []):
        out = results[name] = {}
        try:
            scenario(cfg, out, state)
        except Exception as error:  # noqa: BLE001
            log(f"--- {name} failed")
            traceback.print_exc(file=sys.stderr)
            out["error"] = describe(error)
        log(f"{name}: {json.dumps(out, default=str)}")
    results["validation"] = {"count": VALIDATED["count"], "failures": VALIDATED["failures"][:20]}
    results["elsewhere"] = ELSEWHERE[:20]
    print(json.dumps(results, default=str, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
