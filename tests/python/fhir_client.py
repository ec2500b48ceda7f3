"""Drive a running medlake server as a FHIR client would, with plain `requests`, and
validate every resource it returns against the official FHIR R4 JSON schema.

Usage: fhir_client.py <fhir-base-url> <path/to/fhir.schema.json>
Exits non-zero, with the reason, on the first deviation.
"""

import json
import sys
import uuid

import jsonschema
import requests

BASE, SCHEMA_PATH = sys.argv[1], sys.argv[2]
FHIR_JSON = "application/fhir+json"

with open(SCHEMA_PATH) as f:
    SCHEMA = json.load(f)
VALIDATOR = jsonschema.Draft6Validator(SCHEMA)
validated = 0


def valid(resource):
    """Fail with every schema error of `resource` (and of what it contains)."""
    global validated
    errors = sorted(VALIDATOR.iter_errors(resource), key=lambda e: list(e.path))
    if errors:
        detail = "\n".join(f"  {list(e.path)}: {e.message[:200]}" for e in errors[:10])
        raise SystemExit(f"{resource.get('resourceType')} fails the R4 schema:\n{detail}")
    validated += 1
    return resource


def expect(response, status):
    if response.status_code != status:
        raise SystemExit(
            f"{response.request.method} {response.request.url}: expected {status}, "
            f"got {response.status_code}: {response.text[:500]}"
        )
    if response.content:
        assert response.headers["Content-Type"].startswith(FHIR_JSON), response.headers
        return valid(response.json())
    return None


s = requests.Session()
s.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})

cs = expect(s.get(f"{BASE}/metadata"), 200)
assert cs["fhirVersion"] == "4.0.1"

# Every type the demo data holds: read one of each and validate it.
types = [r["type"] for r in cs["rest"][0]["resource"]]
seen = set()
for t in types:
    history = expect(s.get(f"{BASE}/{t}/_history", params={"_count": 1}), 200)
    for entry in history.get("entry", []):
        res = entry["resource"]
        got = expect(s.get(f"{BASE}/{t}/{res['id']}"), 200)
        assert got["meta"]["versionId"], got
        seen.add(t)
print(f"read and validated one resource of each of {len(seen)} types: {sorted(seen)}")
# The generator writes 13 types; all of them must come back schema-valid.
assert len(seen) >= 13, seen

# Create, read, update with If-Match, vread, history, delete.
patient = {"resourceType": "Patient", "name": [{"family": "Lindqvist", "given": ["Maja"]}],
           "gender": "female", "birthDate": "1971-09-30"}
created = expect(s.post(f"{BASE}/Patient", json=patient), 201)
pid = created["id"]
r = s.get(f"{BASE}/Patient/{pid}")
read = expect(r, 200)
assert r.headers["ETag"] == 'W/"1"', r.headers
read["telecom"] = [{"system": "phone", "value": "+46 8 123 456"}]
updated = expect(s.put(f"{BASE}/Patient/{pid}", json=read, headers={"If-Match": 'W/"1"'}), 200)
assert updated["meta"]["versionId"] == "2"
expect(s.put(f"{BASE}/Patient/{pid}", json=read, headers={"If-Match": 'W/"1"'}), 412)
expect(s.get(f"{BASE}/Patient/{pid}/_history/1"), 200)
obs = {"resourceType": "Observation", "status": "final",
       "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
       "subject": {"reference": f"Patient/{pid}"},
       "valueQuantity": {"value": 61.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
expect(s.post(f"{BASE}/Observation", json=obs), 201)
bundle = expect(s.get(f"{BASE}/Patient/{pid}/_history"), 200)
assert bundle["total"] == 2 and len(bundle["entry"]) == 2, bundle

# A transaction with urn:uuid references.
full_url = f"urn:uuid:{uuid.uuid4()}"
tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
    {"fullUrl": full_url, "resource": {"resourceType": "Patient", "active": True},
     "request": {"method": "POST", "url": "Patient"}},
    {"resource": {**obs, "subject": {"reference": full_url}},
     "request": {"method": "POST", "url": "Observation"}},
]}
response = expect(s.post(BASE, json=tx), 200)
new_pid = response["entry"][0]["resource"]["id"]
assert response["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{new_pid}", response

# Search: what was just written is found at once, and every Bundle (with its entries)
# validates against the schema.
found = expect(s.get(f"{BASE}/Observation",
                     params={"patient": pid, "code": "http://loinc.org|29463-7"}), 200)
assert found["type"] == "searchset" and found["total"] == 1, found
assert found["entry"][0]["search"]["mode"] == "match"
posted = expect(s.post(f"{BASE}/Patient/_search", data={"family": "lindqvist", "birthdate": "1971"},
                       headers={"Content-Type": "application/x-www-form-urlencoded"}), 200)
assert [e["resource"]["id"] for e in posted["entry"]] == [pid], posted
page = expect(s.get(f"{BASE}/Observation", params={"_count": 40, "_sort": "-date"}), 200)
ids, pages = [], 1
while True:
    ids += [e["resource"]["id"] for e in page.get("entry", [])]
    nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
    if not nxt or pages == 4:
        break
    page = expect(s.get(nxt[0]), 200)
    pages += 1
assert pages == 4 and len(ids) == 160 and len(set(ids)) == 160, (pages, len(ids))
encounters = expect(s.get(f"{BASE}/Encounter",
                          params={"_count": 3, "_revinclude": "Observation:encounter"}), 200)
modes = {e["search"]["mode"] for e in encounters["entry"]}
assert modes == {"match", "include"}, modes
everything = expect(s.get(f"{BASE}/Patient/{pid}/$everything"), 200)
assert {e["resource"]["resourceType"] for e in everything["entry"]} == {"Patient", "Observation"}
warned = expect(s.get(f"{BASE}/Patient", params={"shoe-size": 9, "_count": 1}), 200)
assert warned["entry"][-1]["search"]["mode"] == "outcome", warned
expect(s.get(f"{BASE}/Patient", params={"shoe-size": 9}, headers={"Prefer": "handling=strict"}), 400)
print(f"search: {len(ids)} observations over {pages} pages, includes, $everything, POST _search")

# JSON Patch, then delete.
patched = expect(s.patch(f"{BASE}/Patient/{pid}", data=json.dumps(
    [{"op": "replace", "path": "/gender", "value": "other"}]),
    headers={"Content-Type": "application/json-patch+json"}), 200)
assert patched["gender"] == "other"
expect(s.delete(f"{BASE}/Patient/{pid}"), 204)
expect(s.get(f"{BASE}/Patient/{pid}"), 410)

# Errors are OperationOutcomes (validated above by expect).
expect(s.get(f"{BASE}/Patient/does-not-exist"), 404)
expect(s.post(f"{BASE}/Patient", json={"resourceType": "Patient", "gender": 7}), 400)
expect(s.get(f"{BASE}/Patient", params={"_format": "xml"}), 415)
expect(s.get(f"{BASE}/Patient", params={"birthdate": "yesterday"}), 400)

print(f"python client: every interaction behaved; {validated} resources validated against the R4 schema")
