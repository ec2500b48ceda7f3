"""The interfaces without DuckDB, for a machine where the server and DuckDB do not fit in
memory together: the million-row transfers of sql_bench.py (in process against Flight
SQL), then a few of its view queries in process, over Flight SQL and over the Postgres
wire, two interleaved rounds each. Paths and ports as in sql_bench.py's defaults.
"""
import sys, time
sys.path.insert(0, __import__("os").path.dirname(__file__))
import sql_bench as b
inp = b.InProcess(sys.argv[1] if len(sys.argv) > 1 else "target/release/medlake-bench-analytics", sys.argv[2] if len(sys.argv) > 2 else "/tmp/bench-lake")
fl = b.Flight("grpc://127.0.0.1:15051")
pg = b.Pg("host=127.0.0.1 port=15433 dbname=medlake user=bench")
for name, sql in b.TRANSFER:
    for r in range(2):
        ti = inp.run(sql); tf = fl.run(sql)
        print(f"{name} round {r}: in process {ti[0]:.3f} s ({ti[1]} rows), Flight {tf[0]:.3f} s ({tf[1]} rows), Flight/in process {tf[0]/ti[0]:.2f}", flush=True)
for name, ours, _ in b.QUERIES:
    if name.split()[0] not in ("q2", "q5", "q9"):
        continue
    for r in range(2):
        ti = inp.run(ours); tf = fl.run(ours); tp = pg.run(ours)
        print(f"{name} round {r}: in process {ti[0]:.3f} s, Flight {tf[0]:.3f} s, Postgres {tp[0]:.3f} s; answers {ti[2][:40]} / {tf[2][:40]} / {tp[2][:40]}", flush=True)
