"""Adds aurora-sidecar to an ECS Express Mode service's task definition.

Express Mode manages one primary container (plus the load balancer, scaling and
deployments). Sidecars are added "outside Express Mode" with the standard ECS APIs: read
the service's current task definition, add the container, register a new revision and
point the service at it. This tool does that, and nothing else:

    python3 add_sidecar.py --cluster default --service my-app \\
        --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/aurora-sidecar:0.1.0 \\
        --secret-arn arn:aws:secretsmanager:eu-west-1:123456789012:secret:my-app/db-AbCdEf

It prints the `aws ecs update-service` call that deploys the new revision (or makes it
with --apply). Running it again on a task definition that already has the sidecar, as
asked, registers nothing. The transformation (`add_sidecar`) is pure and tested
(deploy/express/test_add_sidecar.py); AWS is only called by `main`.

Credentials, one of:
- --secret-arn ARN: injected into the sidecar only, as DB_SECRET (`secrets` `valueFrom`,
  read by the execution role: it needs secretsmanager:GetSecretValue on that secret, and
  kms:Decrypt for a customer-managed key). Neither the app container nor the task role
  can read it.
- --iam-auth --host HOST --user USER [--database DB]: no password anywhere; the task role
  needs rds-db:connect on arn:aws:rds-db:REGION:ACCOUNT:dbuser:CLUSTER_RESOURCE_ID/USER.
"""
import argparse
import copy
import json
import shlex
import sys

SIDECAR = "aurora-sidecar"
VOLUME = "aurora-sidecar"
OUT_DIR = "/run/aurora-sidecar"
HEALTH = {
    "command": ["CMD", "/usr/local/bin/aurora-sidecar", "health"],
    # Start period plus interval x retries covers five minutes: an Aurora resume from
    # 0 ACU (15-30 s) with room to spare, within ECS's limits.
    "interval": 10,
    "timeout": 5,
    "retries": 10,
    "startPeriod": 300,
}
# What DescribeTaskDefinition returns that RegisterTaskDefinition does not take.
READ_ONLY = ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
             "registeredAt", "registeredBy", "deregisteredAt")


def primary_container(td):
    """Express Mode's one primary container: the essential container that is not ours."""
    apps = [c for c in td["containerDefinitions"] if c["name"] != SIDECAR and c.get("essential", True)]
    if len(apps) != 1:
        raise SystemExit(f"add_sidecar: expected one primary container, found {[c['name'] for c in apps]}")
    return apps[0]


def sidecar_container(opts, app):
    command = [opts.mode, "--drop-to=65532:65532", f"--owner={opts.app_uid}", "--sslmode=verify-full"]
    container = {
        "name": SIDECAR,
        "image": opts.image,
        # `run` stays up (and re-renders on rotation); `once` exits 0 when ready.
        "essential": opts.mode == "run",
        # Starts as root only to drop to 65532 at once, keeping CAP_CHOWN for --owner.
        "user": "0",
        "command": command,
        "mountPoints": [{"sourceVolume": VOLUME, "containerPath": OUT_DIR, "readOnly": False}],
        "healthCheck": dict(HEALTH),
        "stopTimeout": 10,
    }
    if opts.iam_auth:
        command.append("--iam-auth")
        env = [{"name": "AURORA_SIDECAR_HOST", "value": opts.host},
               {"name": "AURORA_SIDECAR_USER", "value": opts.user}]
        if opts.database:
            env.append({"name": "AURORA_SIDECAR_DATABASE", "value": opts.database})
        container["environment"] = env
    else:
        container["secrets"] = [{"name": "DB_SECRET", "valueFrom": opts.secret_arn}]
        if opts.host:
            # The RDS-managed master secret has only username and password.
            container["environment"] = [{"name": "AURORA_SIDECAR_HOST", "value": opts.host}]
    log = app.get("logConfiguration")
    if log and log.get("logDriver") == "awslogs":
        log = copy.deepcopy(log)
        log.setdefault("options", {})["awslogs-stream-prefix"] = SIDECAR
        container["logConfiguration"] = log
    return container


def add_sidecar(described, opts):
    """The RegisterTaskDefinition input for `described` (a DescribeTaskDefinition
    `taskDefinition`) with the sidecar added, or put back as asked: applying it twice
    gives the same result."""
    td = {k: copy.deepcopy(v) for k, v in described.items() if k not in READ_ONLY}
    td["containerDefinitions"] = [c for c in td["containerDefinitions"] if c["name"] != SIDECAR]
    app = primary_container(td)
    td["volumes"] = [v for v in td.get("volumes", []) if v["name"] != VOLUME] + [{"name": VOLUME}]
    app["mountPoints"] = [m for m in app.get("mountPoints", []) if m["sourceVolume"] != VOLUME] + [
        {"sourceVolume": VOLUME, "containerPath": OUT_DIR, "readOnly": True}]
    condition = "HEALTHY" if opts.mode == "run" else "SUCCESS"
    app["dependsOn"] = [d for d in app.get("dependsOn", []) if d["containerName"] != SIDECAR] + [
        {"containerName": SIDECAR, "condition": condition}]
    env = {e["name"]: e for e in app.get("environment", [])}
    for name, value in (("PGSERVICEFILE", f"{OUT_DIR}/pg_service.conf"), ("PGPASSFILE", f"{OUT_DIR}/pgpass"),
                        ("PGSERVICE", "app")):
        env[name] = {"name": name, "value": value}
    app["environment"] = sorted(env.values(), key=lambda e: e["name"])
    td["containerDefinitions"].append(sidecar_container(opts, app))
    if opts.iam_auth and not td.get("taskRoleArn"):
        raise SystemExit("add_sidecar: --iam-auth needs a task role (rds-db:connect) on the task definition")
    return td


def covers(actual, wanted):
    """Whether `actual` (as ECS describes it, defaults filled in) already holds everything
    `wanted` asks for: the test for "nothing to register"."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(k in actual and covers(actual[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(actual, list) and len(actual) == len(wanted)
                and all(covers(a, w) for a, w in zip(actual, wanted)))
    return actual == wanted


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cluster", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--image", required=True, help="the aurora-sidecar image (in your registry)")
    p.add_argument("--mode", choices=["run", "once"], default="run")
    p.add_argument("--app-uid", default="1000:1000", help="UID[:GID] the app runs as (pgpass goes to it)")
    p.add_argument("--secret-arn", help="the database secret, injected into the sidecar only")
    p.add_argument("--iam-auth", action="store_true")
    p.add_argument("--host", help="the cluster endpoint (needed with --iam-auth or a master secret)")
    p.add_argument("--user")
    p.add_argument("--database")
    p.add_argument("--region")
    p.add_argument("--apply", action="store_true", help="also call update-service")
    opts = p.parse_args(argv)
    if opts.iam_auth == bool(opts.secret_arn):
        p.error("give exactly one of --secret-arn and --iam-auth")
    if opts.iam_auth and not (opts.host and opts.user):
        p.error("--iam-auth needs --host and --user")
    return opts


def update_service_command(opts, arn):
    cmd = ["aws", "ecs", "update-service", "--cluster", opts.cluster, "--service", opts.service,
           "--task-definition", arn]
    if opts.region:
        cmd += ["--region", opts.region]
    return shlex.join(cmd)


def main(argv=None):
    opts = parse(argv)
    import boto3  # only here: the transformation and its tests need no AWS SDK

    ecs = boto3.client("ecs", region_name=opts.region)
    services = ecs.describe_services(cluster=opts.cluster, services=[opts.service])["services"]
    if not services:
        raise SystemExit(f"add_sidecar: no service {opts.service} in cluster {opts.cluster}")
    current = ecs.describe_task_definition(taskDefinition=services[0]["taskDefinition"])["taskDefinition"]
    wanted = add_sidecar(current, opts)
    if covers(current, wanted):
        print(f"{current['taskDefinitionArn']} already has the sidecar as asked; nothing registered")
        return 0
    arn = ecs.register_task_definition(**wanted)["taskDefinition"]["taskDefinitionArn"]
    print(f"registered {arn}")
    print(update_service_command(opts, arn))
    if opts.apply:
        ecs.update_service(cluster=opts.cluster, service=opts.service, taskDefinition=arn)
        print("update-service called: ECS rolls the service to the new revision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
