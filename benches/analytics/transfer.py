"""A million rows moved out of medlake, each interface against the in-process collect:
the `TRANSFER` queries of sql_bench.py, rounds interleaved (each round runs each query on
each side in turn), the first round a warm-up. DuckDB is not loaded, so this runs beside
a server on machines where the two would not fit in memory together.

Sides (--sides, in this order):
- inproc: `QueryEngine::query` in `medlake-bench-analytics sql-stdin` (plan, run, collect);
- flight: Flight SQL through Python ADBC, `fetch_arrow_table` (what pandas and polars use);
- pyarrow: the same statement's ticket read with pyarrow.flight (`read_all`): the
  transfer without ADBC's driver, to tell the client's share from the server's;
- pg: the Postgres wire, psycopg, every row fetched as Python values (text format);
- pgbin: the same with psycopg's binary format (`cursor(binary=True)`); medlake's
  Postgres wire has no COPY.

Usage (a server on the lake, see benches/README.md):

    python transfer.py --lake /tmp/flight-lake --bench <medlake-bench-analytics> \
        --flight grpc://127.0.0.1:15151 --pg 'host=127.0.0.1 port=15533 dbname=medlake' \
        [--rounds 3] [--sides inproc,flight,pyarrow,pg,pgbin] [--only narrow]
"""
import argparse
import os
import statistics
import sys
import time

import psycopg
import pyarrow.flight as pa_flight

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sql_bench as b  # noqa: E402


def _varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number, data):
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def statement_command(sql):
    """A Flight SQL `CommandStatementQuery` packed in a protobuf `Any`, as a FlightDescriptor's
    command: the two messages have one bytes field each, written here by hand so that the
    benchmark needs no protobuf package."""
    query = _bytes_field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _bytes_field(1, type_url) + _bytes_field(2, query)


class PyArrowFlight:
    """The statement's FlightInfo, then its ticket's stream read into one table."""

    def __init__(self, uri):
        self.client = pa_flight.FlightClient(uri)

    def run(self, sql):
        t = time.perf_counter()
        info = self.client.get_flight_info(pa_flight.FlightDescriptor.for_command(statement_command(sql)))
        table = self.client.do_get(info.endpoints[0].ticket).read_all()
        took = time.perf_counter() - t
        first = table.slice(0, 1).to_pylist()
        return took, table.num_rows, b.show(first[0].values()) if first else ""


class PgBinary(b.Pg):
    def run(self, sql):
        t = time.perf_counter()
        with self.conn.cursor(binary=True) as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        took = time.perf_counter() - t
        return took, len(rows), b.show(rows[0]) if rows else ""


NAMES = {"inproc": "in process", "flight": "Flight SQL (ADBC)", "pyarrow": "Flight (pyarrow.flight)",
         "pg": "Postgres wire (psycopg, text)", "pgbin": "Postgres wire (psycopg, binary)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--bench", required=True, help="the medlake-bench-analytics binary")
    ap.add_argument("--flight", default="grpc://127.0.0.1:15051")
    ap.add_argument("--pg", default="host=127.0.0.1 port=15433 dbname=medlake user=bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sides", default="inproc,flight,pyarrow,pg,pgbin")
    ap.add_argument("--only", default="", help="narrow or resource: one of the two queries")
    a = ap.parse_args()

    sides = a.sides.split(",")
    make = {"inproc": lambda: b.InProcess(a.bench, a.lake), "flight": lambda: b.Flight(a.flight),
            "pyarrow": lambda: PyArrowFlight(a.flight), "pg": lambda: b.Pg(a.pg),
            "pgbin": lambda: PgBinary(a.pg)}
    runners = {s: make[s]() for s in sides}
    queries = [(name, sql) for name, sql in b.TRANSFER
               if not a.only or (a.only == "resource") == ("resource" in sql)]

    times = {(name, s): [] for name, _ in queries for s in runners}
    for r in range(a.rounds + 1):
        for name, sql in queries:
            line = []
            for side, runner in runners.items():
                took, rows, _ = runner.run(sql)
                if rows != 1_000_000:
                    sys.exit(f"{side} returned {rows} rows for {name}")
                if r:
                    times[(name, side)].append(took)
                line.append(f"{side} {took:.3f} s")
            print(f"round {r}{' (warm-up)' if r == 0 else ''} {name}: " + ", ".join(line),
                  file=sys.stderr, flush=True)

    print(f"\nMedian of {a.rounds} interleaved rounds after a warm-up (each round's times on stderr).\n")
    others = [s for s in runners if s != "inproc"]
    print("| query | " + " | ".join(NAMES[s] for s in runners) + " |")
    print("|---" * (len(runners) + 1) + "|")
    for name, _ in queries:
        base = statistics.median(times[(name, "inproc")]) if "inproc" in runners else None
        cells = []
        for s in runners:
            m = statistics.median(times[(name, s)])
            cells.append(f"{m:.3f} s" + (f" (**{m / base:.2f}x**)" if base and s in others else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
