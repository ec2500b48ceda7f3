"""What pydicom reads from its own test files, for ingest/tests/dicom_pydicom.rs.

Prints one JSON document: the files pydicom ships (test and character-set files), and
for each what pydicom makes of it: whether it reads, the five required attributes, the
indexed attributes as typed by pydicom, and its DICOM JSON (to_json_dict) with bulk data
marked. The Rust test compares medlake's reading with this; no value is written here.
"""

import json
import os
import sys
import warnings

import pydicom
import pydicom.data
from pydicom import valuerep
from pydicom.multival import MultiValue

REQUIRED = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "PatientID"]
TEXT = ["AccessionNumber", "StudyDescription", "StudyID", "Modality", "SeriesDescription",
        "ManufacturerModelName", "PhotometricInterpretation"]
DATES = ["PatientBirthDate", "StudyDate", "PerformedProcedureStepStartDate"]
TIMES = ["StudyTime"]
INTEGERS = ["SeriesNumber", "InstanceNumber", "NumberOfFrames", "Rows", "Columns",
            "BitsAllocated", "SamplesPerPixel"]
NAMES = ["PatientName", "ReferringPhysicianName"]

BULK = "BULK"


def first(ds, keyword):
    """The first value of an attribute, or None when absent or empty."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    if value is None or (isinstance(value, (str, bytes)) and not value.strip(" \0")):
        return None
    return value


def typed(convert, value):
    try:
        return convert(value)
    except Exception:  # noqa: BLE001 - any failure means pydicom could not type it
        return "unreadable"


def values(ds):
    out = {}
    for k in REQUIRED + TEXT:
        v = first(ds, k)
        out[k] = None if v is None else str(v).strip(" \0")
    for k in DATES:
        v = first(ds, k)
        out[k] = None if v is None else typed(lambda s: valuerep.DA(str(s).strip()).isoformat(), v)
    for k in TIMES:
        v = first(ds, k)
        out[k] = None if v is None else typed(lambda s: valuerep.TM(str(s).strip()).isoformat(), v)
    for k in INTEGERS:
        v = first(ds, k)
        out[k] = None if v is None else typed(lambda s: int(valuerep.IS(str(s).strip())), v)
    for k in NAMES:
        v = first(ds, k)
        if v is None:
            out[k] = None
            continue
        pn = v if isinstance(v, valuerep.PersonName) else valuerep.PersonName(v)
        if not str(pn).strip(" ^=\0"):
            out[k] = None
            continue
        words = []
        for group in pn.components:
            for component in group.split("^"):
                for word in component.split():
                    if word.lower() not in words:
                        words.append(word.lower())
        out[k] = {"text": str(pn).strip(" \0"), "words": words}
    return out


def main():
    files = sorted(
        f
        for f in set(pydicom.data.get_testdata_files()) | set(pydicom.data.get_charset_files())
        if os.path.isfile(f)
    )
    report = []
    for path in files:
        entry = {"path": path, "charset": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                entry["values"] = values(ds)
                entry["charset"] = "\\".join(ds.get("SpecificCharacterSet", None) and
                                              list(ds[0x00080005].value if isinstance(ds[0x00080005].value, MultiValue)
                                                   else [ds[0x00080005].value]) or [])
                entry["transfer_syntax"] = str(ds.file_meta.get("TransferSyntaxUID", ""))
                try:
                    entry["json"] = ds.to_json_dict(1024, lambda _element: BULK)
                except Exception as e:  # noqa: BLE001
                    entry["json_error"] = f"{type(e).__name__}: {e}"
            entry["readable"] = True
        except Exception as e:  # noqa: BLE001
            entry["readable"] = False
            entry["error"] = f"{type(e).__name__}: {e}"
        report.append(entry)
    json.dump({"pydicom": pydicom.__version__, "files": report}, sys.stdout)


if __name__ == "__main__":
    main()
