// What DBeaver does through pgJDBC when it connects and browses a database: the driver's
// DatabaseMetaData (getSchemas, getTables, getColumns), then a query with a parameter.
// Compiled and run by tests/tests/postgres_wire.rs against the pgJDBC jar that
// scripts/test fetches with Maven. Prints one line per row it read; exits 1 on an error.
//
// Usage: java -cp postgresql.jar:. PgJdbcBrowse jdbc:postgresql://127.0.0.1:PORT/medlake TABLE

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.Properties;

public class PgJdbcBrowse {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        String table = args[1];
        Properties props = new Properties();
        props.setProperty("user", "dbeaver");
        props.setProperty("ApplicationName", "PgJdbcBrowse");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product " + meta.getDatabaseProductName() + " "
                    + meta.getDatabaseProductVersion());
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) {
                    System.out.println("schema " + rs.getString("TABLE_SCHEM"));
                }
            }
            try (ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) {
                    System.out.println("table " + rs.getString("TABLE_SCHEM") + "."
                            + rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
                }
            }
            try (ResultSet rs = meta.getColumns(null, "fhir", table, "%")) {
                while (rs.next()) {
                    System.out.println("column fhir." + rs.getString("TABLE_NAME") + "."
                            + rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME"));
                }
            }
            String sql = "SELECT id, version_id, last_updated FROM fhir." + table
                    + " WHERE id = ? ORDER BY id";
            try (PreparedStatement ps = conn.prepareStatement(sql)) {
                ps.setString(1, args.length > 2 ? args[2] : "");
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        System.out.println("row " + rs.getString(1) + " " + rs.getLong(2) + " "
                                + rs.getTimestamp(3).toInstant());
                    }
                }
            }
        }
    }
}
