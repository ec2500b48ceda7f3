#!/usr/bin/env python3
"""Vendor the FHIR R4 (4.0.1) SearchParameter definitions that medlake's search index needs.

Reads search-parameters.json (a Bundle of SearchParameters, as published by HL7) from the
shared FHIR R4 folder and writes

    ingest/r4/search-parameters.json.gz   per-type search parameters and the Patient
                                          compartment, embedded in medlake-ingest

Usage:
    python3 tools/vendor-search-params.py [FHIR_R4_DIR]

FHIR_R4_DIR defaults to $MEDLAKE_SHARED/fhir-r4 (MEDLAKE_SHARED defaults to ../shared
relative to the repository root). Python 3 standard library only; the output is
deterministic.

Output format (JSON, gzip, no whitespace):

    {
      "fhirVersion": "4.0.1",
      "types": {
        "Observation": [
          {"code": "patient", "type": "reference", "targets": ["Patient"],
           "terms": [["Observation.subject", "Patient"]]},
          {"code": "code-value-quantity", "type": "composite",
           "terms": [["Observation", null]],
           "components": [["code", "code"], ["value-quantity", "value.ofType(Quantity)"]]},
          ...
        ],
        "Resource": [ {"code": "_id", ...}, ... ]     # common to every type
      },
      "compartments": {                                # from compartmentdefinition-*.json
        "Patient": {"Observation": ["subject", "performer"], ...}
      }
    }

A published expression covers every base type at once (`AllergyIntolerance.patient |
CarePlan.subject.where(resolve() is Patient) | ...`); it is split at its top-level `|` and
each type keeps only its own terms. A term `X.where(resolve() is T)` is written as `[X, T]`:
resolve() cannot follow a reference while indexing, so the indexer keeps only references
whose type is T instead. Parameters without an expression (`_text`, `_content`, `_query`)
and of type `special` (`near`) are left out: medlake does not support them.
"""

import gzip
import io
import json
import os
import re
import sys

FHIR_VERSION = "4.0.1"
RESOLVE_IS = re.compile(r"^(.*)\.where\(resolve\(\) is (\w+)\)$")


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def input_dir(argv):
    if len(argv) > 1:
        return argv[1]
    shared = os.environ.get("MEDLAKE_SHARED") or os.path.join(repo_root(), "..", "shared")
    return os.path.join(shared, "fhir-r4")


def split_union(expression):
    """Split at `|` outside parentheses and quotes."""
    terms, depth, cur, quoted = [], 0, "", False
    for ch in expression:
        if ch == "'":
            quoted = not quoted
        if not quoted:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "|" and depth == 0:
                terms.append(cur.strip())
                cur = ""
                continue
        cur += ch
    terms.append(cur.strip())
    return terms


def unwrap(term):
    """`(Observation.value.ofType(Quantity))` -> `Observation.value.ofType(Quantity)`."""
    while term.startswith("(") and term.endswith(")"):
        depth = 0
        for i, ch in enumerate(term):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(term) - 1:
                return term
        term = term[1:-1].strip()
    return term


def head_type(term):
    m = re.match(r"^([A-Z]\w*)(\.|$)", term)
    return m.group(1) if m else None


def main(argv):
    src = os.path.join(input_dir(argv), "search-parameters.json")
    with open(src, encoding="utf-8") as f:
        bundle = json.load(f)
    params = [e["resource"] for e in bundle["entry"]]
    by_url = {p["url"]: p for p in params}

    types = {}
    skipped = []
    for p in params:
        expression = p.get("expression")
        if not expression or p["type"] == "special":
            skipped.append(p["code"])
            continue
        terms = [unwrap(t) for t in split_union(expression)]
        for base in p["base"]:
            mine = []
            for t in terms:
                head = head_type(t)
                if head == base or (head in ("Resource", "DomainResource") and base in head):
                    pass
                elif head is None and len(p["base"]) == 1:
                    pass  # a relative term (InsurancePlan.name is published as `name | alias`)
                else:
                    continue
                m = RESOLVE_IS.match(t)
                mine.append([m.group(1), m.group(2)] if m else [t, None])
            if not mine:
                continue
            entry = {"code": p["code"], "type": p["type"], "terms": mine}
            if p.get("target"):
                entry["targets"] = sorted(p["target"])
            if p["type"] == "composite":
                comps = []
                for c in p.get("component", []):
                    d = by_url.get(c["definition"])
                    if d is None:
                        break
                    comps.append([d["code"], d["type"], c["expression"]])
                else:
                    entry["components"] = comps
                if "components" not in entry:
                    continue
            types.setdefault(base, []).append(entry)

    for entries in types.values():
        entries.sort(key=lambda e: e["code"])
    compartments = {}
    for name in sorted(os.listdir(input_dir(argv))):
        if name.startswith("compartmentdefinition-") and name.endswith(".json"):
            with open(os.path.join(input_dir(argv), name), encoding="utf-8") as f:
                cd = json.load(f)
            compartments[cd["code"]] = {
                r["code"]: r["param"] for r in cd.get("resource", []) if r.get("param")
            }
    data = json.dumps(
        {
            "fhirVersion": FHIR_VERSION,
            "types": dict(sorted(types.items())),
            "compartments": compartments,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    buf = io.BytesIO()
    # mtime=0 and no file name: byte-identical output for identical input.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    out = os.path.join(repo_root(), "ingest", "r4", "search-parameters.json.gz")
    with open(out, "wb") as f:
        f.write(buf.getvalue())
    count = sum(len(v) for v in types.values())
    print(
        f"wrote {out}: {len(buf.getvalue())} bytes gzip, {count} parameters on "
        f"{len(types)} types; left out: {', '.join(sorted(set(skipped)))}"
    )


if __name__ == "__main__":
    main(sys.argv)
