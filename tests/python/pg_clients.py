"""Real Postgres clients against medlake's Postgres wire, for tests/tests/postgres_wire.rs.

    pg_clients.py psycopg CONNINFO PATIENT_ID
    pg_clients.py sqlalchemy URL PATIENT_ID

Each prints one JSON object with what the client got (values with their Python types,
the SQLSTATE of refused statements, ...); the Rust test checks it. An unexpected error
ends the script with a traceback and exit status 1.
"""

import json
import sys


def typed(v):
    """A value and the name of its Python type, as JSON can carry them."""
    return [type(v).__name__, v if isinstance(v, (int, float, bool, str, type(None))) else str(v)]


def run_psycopg(conninfo, patient_id):
    import psycopg

    out = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The extended protocol with %s parameters (psycopg's server-side binding).
        row = conn.execute(
            "SELECT id, version_id, last_updated, resource FROM fhir.patient WHERE id = %s",
            (patient_id,),
        ).fetchone()
        out["patient"] = [typed(v) for v in row]
        out["patient_tz"] = str(row[2].tzinfo) if row[2] is not None else None
        # The types FHIR data needs, as Postgres types.
        cur = conn.execute(
            "SELECT CAST(7 AS INT) AS i, CAST(8 AS BIGINT) AS b, CAST(1.5 AS DOUBLE) AS f, "
            "CAST(12.34 AS DECIMAL(10,2)) AS n, true AS t, DATE '2024-02-29' AS d, "
            "json_get_str(resource, 'resourceType') AS rt, json_get_json(resource, 'name') AS j "
            "FROM fhir.patient WHERE id = %s",
            (patient_id,),
        )
        out["types"] = [typed(v) for v in cur.fetchone()]
        out["type_oids"] = [d.type_code for d in cur.description]
        # An integer parameter, and the simple protocol (psycopg's client-side cursor).
        out["count_over"] = conn.execute(
            "SELECT count(*) FROM fhir.patient WHERE version_id >= %s", (1,)
        ).fetchone()[0]
        with psycopg.ClientCursor(conn) as cc:
            cc.execute("SELECT count(*) FROM fhir.patient WHERE id = %s", (patient_id,))
            out["simple_count"] = cc.fetchone()[0]
        # Writes are refused; the connection stays usable.
        refused = []
        for sql in [
            "INSERT INTO fhir.patient (id) VALUES ('x')",
            "CREATE TABLE t (a int)",
            "DELETE FROM fhir.patient",
            "DROP TABLE fhir.patient",
        ]:
            try:
                conn.execute(sql)
                refused.append([sql, None])
            except psycopg.Error as e:
                refused.append([sql, e.sqlstate])
        out["refused"] = refused
        out["after_refusal"] = conn.execute("SELECT 1 + 1").fetchone()[0]
        # A read-only transaction, as clients wrap their reads.
        conn.autocommit = False
        with conn.transaction():
            out["in_transaction"] = conn.execute("SELECT count(*) FROM fhir.patient").fetchone()[0]
        try:
            with conn.transaction():
                conn.execute("UPDATE fhir.patient SET id = 'y'")
        except psycopg.Error as e:
            out["refused_in_transaction"] = e.sqlstate
        out["after_transaction"] = conn.execute("SELECT 2 + 2").fetchone()[0]
        conn.commit()
        conn.autocommit = True
        # Settings: SHOW, current_setting(), and SET that stays in this connection.
        out["show_search_path"] = conn.execute("SHOW search_path").fetchone()[0]
        out["current_schema"] = conn.execute("SELECT current_schema()").fetchone()[0]
        out["version"] = conn.execute("SELECT version()").fetchone()[0]
        conn.execute("SET application_name = 'first'")
        with psycopg.connect(conninfo, autocommit=True) as other:
            other.execute("SET application_name = 'second'")
            out["other_app"] = other.execute("SELECT current_setting('application_name')").fetchone()[0]
        out["first_app"] = conn.execute("SELECT current_setting('application_name')").fetchone()[0]
        out["first_app_show"] = conn.execute("SHOW application_name").fetchone()[0]
        out["parameter_status_app"] = conn.info.parameter_status("application_name")
    print(json.dumps(out))


def run_sqlalchemy(url, patient_id):
    import pandas as pd
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    out = {}
    with engine.connect() as conn:
        df = pd.read_sql(
            text("SELECT id, version_id, last_updated FROM fhir.patient WHERE id = :id"),
            conn,
            params={"id": patient_id},
        )
        out["rows"] = len(df)
        out["dtypes"] = {c: str(t) for c, t in df.dtypes.items()}
        out["ids"] = df["id"].tolist()
        df = pd.read_sql(text("SELECT id, resource FROM fhir.patient ORDER BY id"), conn)
        out["all_ids"] = df["id"].tolist()
    inspector = inspect(engine)
    out["schemas"] = inspector.get_schema_names()
    out["tables"] = {
        s: sorted(inspector.get_table_names(schema=s) + inspector.get_view_names(schema=s))
        for s in out["schemas"]
        if s not in ("pg_catalog", "information_schema")
    }
    reflected = [("fhir", "patient"), ("fhir", "observation"), ("fhir_history", "patient"),
                 ("views", "patient")]
    out["columns"] = {
        f"{s}.{t}": [
            {"name": c["name"], "type": str(c["type"]),
             "timezone": getattr(c["type"], "timezone", None), "nullable": c["nullable"],
             "default": c["default"], "comment": c.get("comment")}
            for c in inspector.get_columns(t, schema=s)
        ]
        for s, t in reflected
    }
    # medlake has no keys nor indexes: SQLAlchemy must find none.
    out["keys"] = {
        f"{s}.{t}": {
            "pk": inspector.get_pk_constraint(t, schema=s),
            "foreign_keys": inspector.get_foreign_keys(t, schema=s),
            "unique": inspector.get_unique_constraints(t, schema=s),
            "check": inspector.get_check_constraints(t, schema=s),
            "indexes": inspector.get_indexes(t, schema=s),
        }
        for s, t in reflected
    }
    # pandas reads a whole table by name through SQLAlchemy's reflection of it.
    out["read_table"] = {}
    for s, t in reflected:
        df = pd.read_sql_table(t, engine, schema=s)
        out["read_table"][f"{s}.{t}"] = {
            "columns": list(df.columns),
            "rows": len(df),
            "ids": sorted(str(v) for v in df["id"]),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    which, target, patient = sys.argv[1], sys.argv[2], sys.argv[3]
    {"psycopg": run_psycopg, "sqlalchemy": run_sqlalchemy}[which](target, patient)
