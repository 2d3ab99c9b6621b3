/* The floor for a process whose whole job is one libpq login, for scripts/bench/run: connect
   with the conninfo in argv[1] (password from PGPASSWORD), check, disconnect. Built by
   scripts/bench/run against the system's libpq; the prototypes are declared here so that
   libpq's headers (libpq-dev) are not needed. */
typedef struct pg_conn PGconn;
extern PGconn *PQconnectdb(const char *conninfo);
extern int PQstatus(const PGconn *conn);
extern void PQfinish(PGconn *conn);

int main(int argc, char **argv) {
    PGconn *conn = PQconnectdb(argc > 1 ? argv[1] : "");
    int ok = PQstatus(conn) == 0; /* CONNECTION_OK */
    PQfinish(conn);
    return ok ? 0 : 1;
}
