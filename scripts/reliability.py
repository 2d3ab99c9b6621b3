"""Writes docs/RELIABILITY.md from the figures the tests recorded (scripts/reliability)."""
import argparse
import datetime
import json
import re

CMD = "scripts/reliability"

# (what, figure, test module and name, outcome asserted)
FAULTS = [
    ("57P03 starting up, answered 3 times before the login goes through", "fault_sqlstate_57P03", "faults transient_sqlstates_are_retried_until_the_login_works", "retried: 3 failed + 1 good connection, exactly"),
    ("53300 too many connections, 3 times", "fault_sqlstate_53300", "faults transient_sqlstates_are_retried_until_the_login_works", "retried: 4 connections"),
    ("08006 connection failure, 3 times", "fault_sqlstate_08006", "faults transient_sqlstates_are_retried_until_the_login_works", "retried: 4 connections"),
    ("57P01 admin shutdown (failover), 3 times", "fault_sqlstate_57P01", "faults transient_sqlstates_are_retried_until_the_login_works", "retried: 4 connections"),
    ("28000 while resuming (2), then 28000 'no encryption' under sslmode=disable (1), then 'PAM authentication failed' for a password (1)", "fault_sqlstate_28000", "faults sqlstate_28000_is_retried_early_but_tls_required_fails_at_once", "retried: 3 connections; then 78 on the first answer; then 77 on the first answer, advising --iam-auth"),
    ("28P01 once (rotation race), then on every login", "fault_sqlstate_28P01", "faults password_rejected_is_re_resolved_then_fails_after_the_retries", "re-read and retried: 2 connections; then 77 after 1 + 3 retries = 4 connections"),
    ("3D000 on the maintenance database", "fault_sqlstate_3D000", "faults missing_maintenance_database_fails_at_once", "78 at once, 2 connections"),
    ("connection closed before any byte, 3 times", "fault_drop", "faults dropped_connections_and_cut_tls_handshakes_are_retried", "retried: 4 connections"),
    ("TLS handshake cut after the ClientHello, 2 times (verify-ca)", "fault_cut_tls", "faults dropped_connections_and_cut_tls_handshakes_are_retried", "retried: 3 connections, no plain-text fallback, TLS session proven by pg_stat_ssl"),
    ("connect held 3 s (resume), then held 30 s with --attempt-timeout 1s", "fault_hold", "faults a_held_connect_is_one_attempt_and_a_hung_one_is_cut_and_retried", "1 attempt; then cut at 1 s and retried: 2 connections"),
    ("PostgreSQL SIGKILLed while the login is in flight, restarted 1 s later", "fault_pg_kill_wait", "faults postgres_killed_during_the_wait_and_during_provisioning", "ready, no operator"),
    ("PostgreSQL SIGKILLed between the existence check and CREATE DATABASE", "fault_pg_kill_provisioning", "faults postgres_killed_during_the_wait_and_during_provisioning", "ready, exactly one database"),
    ("PostgreSQL SIGKILLed while run is ready, then a rotation", "fault_pg_kill_ready", "faults postgres_killed_while_run_is_ready", "healthy throughout, files unchanged; the rotation published after the restart"),
    ("Secrets Manager: 400 Throttling, 500, 503, 400 Throttling", "fault_secrets_manager_errors", "faults secrets_manager_throttling_and_5xx_are_retried", "all retried; 5 requests, the 5th read the secret"),
    ("Secrets Manager (moto) stopped during run's refresh, restarted", "fault_secrets_manager_down", "faults secrets_manager_down_during_a_refresh_degrades_then_recovers", "degraded and healthy, files byte-identical, ready again with nothing rewritten"),
    ("out-dir's parent a file; out-dir missing under a writable parent", "fault_outdir_missing", "outdir an_out_dir_that_cannot_be_created_exits_73_naming_it", "73 naming the path; created"),
    ("out-dir on a read-only tmpfs", "fault_outdir_read_only", "outdir read_only_and_full_out_dirs_exit_73_and_keep_the_previous_files", "73 naming the path, previous files byte-identical"),
    ("out-dir on a full tmpfs at start", "fault_outdir_full_at_start", "outdir read_only_and_full_out_dirs_exit_73_and_keep_the_previous_files", "73 naming the path, previous files byte-identical, no temporary file"),
    ("tmpfs full during run's refresh (one spare page)", "fault_outdir_full_during_refresh", "outdir a_full_disk_during_a_refresh_keeps_the_old_files_and_degrades", "degraded (out_dir), none of the new set written; freed: published"),
    ("symlinks planted at final and temporary names", "fault_symlinks_planted", "outdir planted_symlinks_are_replaced_never_followed", "replaced or swept, target file unchanged"),
    ("umask 000, 077, 022", "fault_umasks", "outdir modes_do_not_depend_on_the_umask", "pgpass and application.profile 0600, others 0644"),
    ("pgpass owned by uid 31337, mode 0644 (without and with --owner)", "fault_foreign_pgpass", "outdir a_foreign_pgpass_is_replaced_with_the_right_owner", "replaced: 0600, owned by the sidecar or --owner"),
]


# (case, outcome asserted, test): each proven by the test named, which failed before the
# change that made it hold.
SECURITY = [
    ("a server declines TLS and asks for the password in clear text (sslmode prefer and disable)",
     "nothing sent; 78 tls_required at once, saying what happened; sent only with --allow-insecure-auth",
     "security::a_downgrading_server_never_gets_a_clear_text_or_md5_password"),
    ("the same, asking for MD5", "nothing sent; 78; sent only with --allow-insecure-auth",
     "security::a_downgrading_server_never_gets_a_clear_text_or_md5_password"),
    ("SCRAM channel binding against the TLS cluster",
     "a login requiring it succeeds; verify-full requires it: an MD5 role is refused (78, the way out named), "
     "--channel-binding prefer lets it in",
     "tls::channel_binding_is_used_and_required_under_verify_full"),
    ("a user granted rds_iam given a password under verify-full",
     "not sent (binding required), 78 naming --iam-auth; with binding only preferred, PAM refuses it: 77",
     "iam::a_password_for_a_pam_user_is_refused_with_advice"),
    ("an RDS/Aurora host without --sslmode", "verify-full against the image's bundle; other hosts prefer",
     "db::tls::tests::an_rds_host_gets_the_rds_connector_and_any_other_host_the_given_one"),
    ("status.json a symlink to /dev/zero, a FIFO, a 100 MB file", "health: not ready, within a second",
     "security::health_answers_at_once_for_a_planted_symlink_fifo_or_huge_file"),
    ("a directory planted at a temporary name", "swept; the start succeeds",
     "security::a_directory_planted_at_a_temporary_name_does_not_stop_the_start"),
    ("a server message with a newline and an escape sequence", "escaped in logs, errors and health; no forged line",
     "security::server_text_cannot_forge_a_log_line_or_an_escape_sequence"),
    ("RUST_LOG=trace with IAM and a session token", "no session token, access key id or secret key in the logs",
     "iam::the_session_token_and_key_id_never_reach_a_trace_log"),
    ("another process of the same uid reads /proc/PID/environ", "refused (non-dumpable); an ordinary process's is readable",
     "security::another_process_of_the_same_uid_cannot_read_the_environment"),
    ("exec's child environment", "no DB_SECRET / PGPASSWORD unless --keep-secret-env",
     "security::the_exec_child_does_not_inherit_the_secret_variable"),
    ("PGPASSWORD with a newline", "65, naming PGPASSWORD, as the JSON source does",
     "secret::tests::pgpassword_with_a_newline_is_refused_like_the_json_one"),
    ('a server answers the TLS request with a byte other than S or N (E, X), then asks for clear text (default prefer; doctor, even with --allow-insecure-auth)',
     'nothing sent; 78 naming the byte; doctor fails at its TLS step',
     'security::a_server_answering_the_tls_request_with_another_byte_never_gets_the_password'),
    ('a NoticeResponse claiming 2 GiB',
     'refused at its header (over 16 KiB before authentication, 1 MiB after, under TLS too); the client took a few MB at most; 69',
     'security::a_notice_claiming_gigabytes_is_refused_at_its_header'),
    ('the app secret names an existing role (in pg_read_all_data) with a new password, and an admin-owned database',
     "refused (78, the COMMENT ON ROLE that adopts it named); its password, memberships and the database's owner unchanged",
     'bootstrap::an_existing_role_is_never_taken_over_nor_a_used_or_reserved_database_handed_over'),
    ('a marked role with CREATEDB, BYPASSRLS or a membership; an admin database with a table; postgres, template0/1, rdsadmin as the app database',
     'role refused (78); the used database left with the admin (warned); reserved databases refused (78); an adopted role and a fresh empty database still managed',
     'bootstrap::an_existing_role_is_never_taken_over_nor_a_used_or_reserved_database_handed_over'),
    ('run: the secret rewritten to name another existing role, then SIGHUP',
     "degraded; the role's password unchanged; the old files stay",
     'bootstrap::a_rotation_naming_an_existing_role_does_not_take_it_over'),
    ("the master secret as the app's and as --admin-secret-*, its login working",
     '78, nothing published',
     'bootstrap::the_refusals_and_their_exit_codes'),
    ('a root sidecar in a 0777 out-dir; another thread swaps each new ..v.* directory for a symlink into a root-only directory (20 starts)',
     'never written or chmodded through (ready or 73); every start warns about the out-dir',
     'outdir::a_version_directory_swapped_for_a_symlink_is_never_written_through'),
    ('two sidecars started together on one out-dir, 40 times',
     'both ready; ..data always holds the whole set',
     'outdir::two_sidecars_on_one_out_dir_never_leave_a_torn_set_marked_ready'),
    ('a database owner named with a newline, a forged log line, ESC, BEL and U+202E',
     'escaped in the text log; no forged line, no raw control or bidi character',
     'bootstrap::a_forged_owner_name_cannot_forge_a_text_log_line'),
    ("the bootstrap's query answered with NULL, or with text where a boolean belongs (a fake server)",
     '77 / 69 with a message; no panic',
     'security::null_or_mistyped_answers_to_the_bootstrap_are_errors_not_panics'),
    ('a FIFO as --secret-file or --admin-secret-file, --wait-timeout 2s',
     '78 at once (not a regular file)',
     'security::a_fifo_as_the_secret_file_is_refused_at_once'),
    ('a resolver that never answers (mount namespace), once --wait-timeout 2s and doctor --step-timeout 1s',
     'both exit 69 within 5 s (15 s before)',
     'security::a_silent_resolver_does_not_stretch_the_deadlines'),
    ('--wait-timeout 18446744073709551615 or 5124095576030431h',
     '64 naming the flag, no panic',
     'bad_input::every_bad_input_gets_its_exit_code_a_named_field_and_no_files'),
    ('dbname "app1db  ", username "master ", host [::1], h:5433, user@h, a,b',
     '78 naming the field; nothing written',
     'bad_input::every_bad_input_gets_its_exit_code_a_named_field_and_no_files'),
    ('channel binding required by the sidecar',
     'pg_service.conf says channel_binding=require; psql logs in through it',
     'tls::channel_binding_is_used_and_required_under_verify_full'),
    ('--drop-to with fs.suid_dumpable = 1',
     "the dropped sidecar is not dumpable (/proc/PID stays root's)",
     'privileges::dropped_sidecar_runs_unprivileged_and_hands_pgpass_to_the_app_uid'),
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--figures", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--supply-chain", required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--commit", required=True)
    a = p.parse_args()

    fig = {}
    with open(a.figures) as f:
        for line in f:
            d = json.loads(line)
            fig[d["figure"]] = d["value"]

    log = open(a.log).read()
    passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", log))
    failed = sum(int(n) for n in re.findall(r"(\d+) failed", log))
    supply = open(a.supply_chain).read()

    def get(name):
        if name not in fig:
            raise SystemExit(f"reliability.py: no figure {name!r}: did its test run?")
        return fig[name]

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = []
    w = out.append
    w("# Reliability")
    w("")
    w(f"Produced by `{CMD}` on {now}, commit {a.commit}: {passed} tests passed, {failed} failed, in {a.seconds} s "
      "(2 cores, PostgreSQL 15, moto). Every figure below was counted by the test that produced it while it ran "
      "(`AURORA_SIDECAR_FIGURES`), not typed in. The same tests run in `scripts/test`, so CI runs them on every change.")
    w("")
    w("## Summary")
    w("")
    w("| what | figure |")
    w("|---|---|")
    w(f"| faults injected and survived as documented | {sum(get(k) for _, k, _, _ in FAULTS)} in {len(FAULTS)} scenarios |")
    w(f"| bad inputs tried (each: its exit code, the field named, no file, no password in the output) | {get('bad_inputs')} |")
    w(f"| SIGKILLs at random moments of a render | {get('kill_iterations')}, torn files {get('kill_torn_files')} |")
    props = {k: v for k, v in fig.items() if k.startswith("property_")}
    fuzz = {k: v for k, v in fig.items() if k.startswith("fuzz_")}
    w(f"| property-test cases run | {sum(props.values())} |")
    w(f"| parser fuzz executions (bounded proptest, no panic, no password echoed) | {sum(fuzz.values())} |")
    ok = "advisories ok" in supply and "bans ok" in supply and "licenses ok" in supply and "sources ok" in supply
    w(f"| cargo deny (advisories, bans, licenses, sources) against the offline RustSec copy | {'passed' if ok else 'FAILED'} |")
    w("")
    w("## Faults")
    w("")
    w("The Aurora resume simulator is `tests/common/front.rs`: a TCP front for a real PostgreSQL that, per connection, "
      "holds, drops, cuts the TLS handshake, or answers the startup message with a FATAL `ErrorResponse` carrying a chosen "
      "SQLSTATE, and can run a hook (a SIGKILL of the server) when a client's bytes contain a needle. "
      "Secrets Manager faults go through `HttpFront` (status codes with AWS error types) or stop moto itself. "
      "Out-dir faults are real tmpfs mounts. Connection counts are asserted exactly.")
    w("")
    w("| fault | injected | outcome (asserted) | test |")
    w("|---|---|---|---|")
    for what, key, test, outcome in FAULTS:
        w(f"| {what} | {get(key)} | {outcome} | `cargo test --test tests {test.split()[0]}::{test.split()[1]}` |")
    w("")
    w("## Kills mid-render")
    w("")
    w(f"`cargo test --test tests atomicity::` — {get('kill_iterations')} runs of `once` over one out-dir whose secret alternates "
      "between two logins (so every run replaces every credential file), each SIGKILLed after a random delay aimed at "
      "the second half of a run (seeded, so the schedule repeats). After each kill every file present must be byte for byte "
      "one of the two complete renderings, `status.json` must parse, and `ready` may exist only with one login's full set.")
    w("")
    w("| what | count |")
    w("|---|---|")
    w(f"| kills | {get('kill_iterations')} |")
    w(f"| kills that caught files being written (temporaries or a second version present, or new files without the marker) | {get('kill_mid_render')} |")
    w(f"| kills before `ready` | {get('kill_before_ready')} |")
    w(f"| kills before the run removed the previous marker (the previous run's full set and marker stay) | {get('kill_before_start')} |")
    w(f"| temporary files left by kills, all swept by the next run | {get('kill_temporaries_swept')} |")
    w(f"| version directories left by kills (written, not yet current), all swept by the next run | {get('kill_versions_swept')} |")
    w(f"| kills that left files of two logins side by side | {get('kill_mixed_sets')} |")
    w(f"| torn or unparseable files | {get('kill_torn_files')} |")
    w("")
    w("The credential files are published as one version: written into a fresh hidden directory, fsynced, and made "
      "current by one `rename` of the `..data` symlink (the kubelet's scheme), so no kill can leave files of two "
      "logins side by side; the test asserts 0.")
    w("")
    w("## Security")
    w("")
    w("Tried as an attacker would (small fake servers on loopback, planted files, another uid); each case is a "
      "test that failed on the code before the change that made it hold.")
    w("")
    w("| case | outcome (asserted) | test | this run |")
    w("|---|---|---|---|")
    for case, outcome, test in SECURITY:
        ok = re.search(rf"^test {re.escape(test)} \.\.\. ok$", log, re.M)
        w(f"| {case} | {outcome} | `{test}` | {'passed' if ok else '**not run**'} |")
    w("")
    w("## Bad input")
    w("")
    w(f"`cargo test --test tests bad_input::` — {get('bad_inputs')} cases in one table: malformed JSON, wrong types, missing and "
      "empty fields, ports 0/70000/\"abc\"/5432.5/-1/true, NUL and newlines in each field, 64-byte names, unknown "
      "engine, duplicated fields, a secret over Secrets Manager's 64 KiB limit (env and file), a file that is not UTF-8, "
      "unreadable files, an unset variable, conflicting sources and bad flag values. Each asserts the documented exit "
      "code, a message naming the field or flag (and the source), no credential file and no `ready`, and that the "
      "password (a canary) appears in neither stdout nor stderr. A separate case creates a database named "
      "`it's \"x\"; DROP DATABASE postgres; --` verbatim and checks that `postgres` still exists.")
    w("")
    w("## Properties and fuzzing")
    w("")
    w("`cargo test --lib` (proptest; counts recorded only when a property ran all its cases):")
    w("")
    w("| property | cases |")
    w("|---|---|")
    for k, v in sorted(props.items()) + sorted(fuzz.items()):
        w(f"| `{k}` | {v} |")
    w("")
    w("## IAM authentication")
    w("")
    w("`cargo test --test tests iam::` — the PAM rig (a TLS cluster whose IAM user is checked by a botocore verifier through "
      "`pam_exec`, as Aurora checks tokens through PAM); see the README's IAM section.")
    w("")
    w("| what | count |")
    w("|---|---|")
    for k, v in sorted((k, v) for k, v in fig.items() if k.startswith("iam_")):
        w(f"| `{k}` | {v} |")
    w("")
    w("## Supply chain")
    w("")
    w("`scripts/supply-chain`: `cargo deny check` with `deny.toml` (licenses, bans — `ring`, `openssl`, `native-tls`, "
      "`backoff`, `instant` banned, one TLS stack, one crypto provider —, sources crates.io only, advisories from "
      "`../shared/advisory-db`), plus a self-test that a ban on the provider in use is refused. This run's verdicts:")
    w("")
    w("```")
    for line in [l for l in supply.splitlines() if re.search(r"^==>|\bok\b|passed|failed", l)]:
        w(line)
    w("```")
    print("\n".join(out))



if __name__ == "__main__":
    main()
