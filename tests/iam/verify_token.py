"""PAM verifier for IAM tokens, as Aurora's PAM module checks them (tests/iam.rs), or
as Aurora DSQL checks its own (tests/dsql.rs: config "service": "dsql").

pam_exec (expose_authtok) runs it as the server's user with the password on stdin. It
accepts only a token for the configured host, port and region, for the user logging in,
signed with the test's static credentials, not expired: it recomputes the token with
botocore's own generate_db_auth_token at the token's signing time and compares. For DSQL:
a token for the host alone (no port), for Action DbConnectAdmin when the user is admin
and DbConnect for any other, no DBUser, recomputed with botocore's
generate_db_connect_admin_auth_token / generate_db_connect_auth_token.
In DSQL mode with config "mappings", a role other than admin must also be mapped to the
signing identity in sys.iam_pg_role_mappings, as DSQL's AWS IAM GRANT does.
Every verdict is appended to the log (one JSON line), which the tests count.

Usage: verify_token.py CONFIG.json   (token on stdin; PAM_USER in the environment)
"""
import datetime
import json
import os
import sys
import urllib.parse

cfg = json.load(open(sys.argv[1]))
sys.path.insert(0, cfg["site_packages"])
user = os.environ.get("PAM_USER", "")
token = sys.stdin.buffer.read().split(b"\0", 1)[0].decode("utf-8", "replace")


def verdict(ok, reason):
    with open(cfg["log"], "a") as f:
        f.write(json.dumps({"user": user, "ok": ok, "reason": reason}) + "\n")
    sys.exit(0 if ok else 1)


# The test can ask for the next N tokens to be refused, whatever they are.
try:
    reject = int(open(cfg["control"]).read().strip() or "0")
except FileNotFoundError:
    reject = 0
if reject > 0:
    with open(cfg["control"], "w") as f:
        f.write(str(reject - 1))
    verdict(False, "refused on request")

dsql = cfg.get("service") == "dsql"
authority, sep, query = token.partition("/?")
want_authority = cfg["host"] if dsql else f"{cfg['host']}:{cfg['port']}"
if not sep or authority != want_authority:
    verdict(False, "not a token for this host and port")
try:
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True))
    signed_at = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    expires = int(params["X-Amz-Expires"])
except (KeyError, ValueError):
    verdict(False, "malformed token")
if dsql:
    action = "DbConnectAdmin" if user == "admin" else "DbConnect"
    if params.get("Action") != action or "DBUser" in params:
        verdict(False, "not a token for this role's action")
elif params.get("Action") != "connect" or params.get("DBUser") != user:
    verdict(False, "not a token for this user")
now = datetime.datetime.utcnow()
# The client matrix (scripts/clients.py) shortens a token's life to see clients renew it.
expires = min(expires, cfg.get("max_age", expires))
if now > signed_at + datetime.timedelta(seconds=expires):
    verdict(False, "expired")
if signed_at > now + datetime.timedelta(minutes=5):
    verdict(False, "signed in the future")

import botocore.auth  # noqa: E402
import botocore.session  # noqa: E402

botocore.auth.get_current_datetime = lambda *a, **k: signed_at
session = botocore.session.get_session()
session.set_credentials(cfg["access_key"], cfg["secret_key"])
if dsql:
    client = session.create_client("dsql", region_name=cfg["region"])
    sign = (client.generate_db_connect_admin_auth_token if user == "admin"
            else client.generate_db_connect_auth_token)
    expected = sign(cfg["host"], cfg["region"])
else:
    client = session.create_client("rds", region_name=cfg["region"])
    expected = client.generate_db_auth_token(cfg["host"], cfg["port"], user, Region=cfg["region"])
want = dict(urllib.parse.parse_qsl(expected.partition("/?")[2]))
if params != want:
    verdict(False, "signature does not match")
# DSQL lets a DbConnect token in as a role only when the signing identity is mapped to it
# (AWS IAM GRANT, listed in sys.iam_pg_role_mappings); the test's credentials stand for
# the IAM role config "identity_arn". Read over the server's own socket, as superuser.
mappings = cfg.get("mappings")
if dsql and user != "admin" and mappings:
    import subprocess  # noqa: E402

    sql = "SELECT count(*) FROM sys.iam_pg_role_mappings WHERE pg_role_name = :'u' AND arn = :'a'"
    out = subprocess.run(
        [mappings["psql"], "-h", mappings["socket"], "-p", str(cfg["port"]), "-U", "postgres",
         "-d", "postgres", "-X", "-tA", "-v", f"u={user}", "-v", f"a={mappings['identity_arn']}"],
        input=sql, capture_output=True, text=True, timeout=10)
    if out.stdout.strip() != "1":
        verdict(False, "no AWS IAM GRANT of this role to the signing identity")
verdict(True, "valid")
