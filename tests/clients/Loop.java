// pgjdbc: jdbc:postgresql://?service=NAME reads PGSERVICEFILE (host, port, dbname, user,
// sslmode, sslrootcert); with no password set, Driver.parseURL reads PGPASSFILE at every
// connect (PgPassParser), so a rotated password is used by the next connection.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;

public class Loop {
  public static void main(String[] args) throws Exception {
    double seconds = Double.parseDouble(args[0]);
    long interval = (long) (Double.parseDouble(args[1]) * 1000);
    String url = "jdbc:postgresql://?service=" + System.getenv("PGSERVICE") + "&connectTimeout=5";
    long end = System.currentTimeMillis() + (long) (seconds * 1000);
    while (System.currentTimeMillis() < end) {
      try (Connection c = DriverManager.getConnection(url);
          ResultSet rs = c.createStatement().executeQuery("select current_user")) {
        rs.next();
        System.out.println("ok " + System.currentTimeMillis() / 1000.0);
      } catch (Exception e) {
        System.out.println("fail " + System.currentTimeMillis() / 1000.0 + " "
            + String.valueOf(e.getMessage()).replace('\n', ' '));
      }
      System.out.flush();
      Thread.sleep(interval);
    }
  }
}
