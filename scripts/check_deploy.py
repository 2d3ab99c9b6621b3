"""Checks of the deployment files that no off-the-shelf validator makes.

- ECS task definitions: validated against the RegisterTaskDefinition input model that
  botocore ships (parameter validation: names, types, required fields), then the rules
  ECS applies at run time: a HEALTHY dependency needs a health check, COMPLETE/SUCCESS are
  refused on an essential container, health-check ranges, and the sidecar's command; the
  ARM64 (Graviton) variant is the x86_64 one on ARM64 and nothing else.
- The Copilot manifest: the keys and values the README promises (Copilot has no offline
  validator): an essential sidecar with an exec-form `health` check covering 5 minutes
  within ECS's limits, the volume read-write in the sidecar and read-only in the app, the
  app depending on the sidecar being healthy, and the secret reaching the sidecar.

Usage: python3 check_deploy.py  (from the repository root; needs botocore and PyYAML)
"""
import json
import re
import sys

import botocore.session
import yaml
from botocore.validate import ParamValidator

HEALTH = ["CMD", "/usr/local/bin/aurora-sidecar", "health"]
FIVE_MINUTES = 300
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def health_budget(start_period, interval, retries):
    return start_period + interval * retries


def check_task_definition(path, shape):
    return check_task_definition_dict(json.load(open(path)), path, shape)


def register_shape():
    ecs = botocore.session.get_session().get_service_model("ecs")
    return ecs.operation_model("RegisterTaskDefinition").input_shape


def task_definition_failures(td, label):
    """The checks below for one task definition given as a dict (a synthesized or
    transformed one); the failures, none when it passes."""
    before = len(failures)
    check_task_definition_dict(td, label, register_shape())
    found = failures[before:]
    del failures[before:]
    return found


def check_task_definition_dict(td, path, shape):
    report = ParamValidator().validate(td, shape)
    check(not report.has_errors(), f"{path}: {report.generate_report()}")
    containers = {c["name"]: c for c in td["containerDefinitions"]}
    for c in td["containerDefinitions"]:
        for dep in c.get("dependsOn", []):
            target = containers.get(dep["containerName"])
            check(target is not None, f"{path}: {c['name']} depends on unknown {dep['containerName']}")
            if target is None:
                continue
            if dep["condition"] == "HEALTHY":
                check("healthCheck" in target, f"{path}: HEALTHY on {target['name']}, which has no healthCheck")
            if dep["condition"] in ("COMPLETE", "SUCCESS"):
                check(not target.get("essential", True), f"{path}: {dep['condition']} on essential {target['name']}")
        hc = c.get("healthCheck")
        if hc:
            check(hc["command"] == HEALTH, f"{path}: {c['name']} health check is not the exec-form health command")
            check(5 <= hc["interval"] <= 300, f"{path}: interval out of 5-300")
            check(2 <= hc["timeout"] <= 60, f"{path}: timeout out of 2-60")
            check(1 <= hc["retries"] <= 10, f"{path}: retries out of 1-10")
            check(0 <= hc["startPeriod"] <= 300, f"{path}: startPeriod out of 0-300")
            budget = health_budget(hc["startPeriod"], hc["interval"], hc["retries"])
            check(budget >= FIVE_MINUTES, f"{path}: health check covers only {budget} s")
        if "aurora-sidecar" in c["image"]:
            mounts = c.get("mountPoints", [])
            check(any(not m.get("readOnly", False) for m in mounts), f"{path}: sidecar volume not writable")
            cmd = c.get("command", [])
            check(cmd and cmd[0] in ("run", "once"), f"{path}: sidecar command {cmd}")
            if cmd and cmd[0] == "run":
                check(c.get("essential", True), f"{path}: run sidecar must be essential")
                check(c.get("stopTimeout", 30) <= 120, f"{path}: stopTimeout above Fargate's 120 s")
            env = {e["name"] for e in c.get("environment", [])}
            if "--iam-auth" in cmd or "--dsql" in cmd:
                # IAM (DSQL too): the login's place from the environment, no secret, and a
                # task role (whose policy must grant rds-db:connect, or dsql:DbConnect) to
                # sign with.
                check({"AURORA_SIDECAR_HOST", "AURORA_SIDECAR_USER"} <= env, f"{path}: --iam-auth without host and user")
                # The app's own secret has no place here (an admin secret may set its role up);
                # DSQL has no secrets at all.
                secrets = {s["name"] for s in c.get("secrets", [])}
                check("AURORA_SIDECAR_SECRET_ID" not in env and "DB_SECRET" not in secrets,
                      f"{path}: an IAM sidecar given the app's secret")
                check("--dsql" not in cmd or not secrets, f"{path}: a DSQL sidecar given a secret")
                check(not any(a.startswith("--sslmode=") and a.split("=", 1)[1] in ("disable", "prefer") for a in cmd),
                      f"{path}: --iam-auth needs TLS")
                check("taskRoleArn" in td, f"{path}: --iam-auth needs a task role to sign with")
            else:
                check("AURORA_SIDECAR_SECRET_ID" in env or c.get("secrets"), f"{path}: sidecar has no secret source")
            if any(a.startswith("--drop-to") for a in cmd):
                check(c.get("user") in ("0", "0:0", "root"), f"{path}: --drop-to needs user 0")
            if "--pgbouncer" in cmd:
                check_pgbouncer(td, c, cmd, path)
            admin = [a.split("=", 1)[1] for a in cmd if a.startswith("--admin-secret-env=")]
            if admin:
                # Least privilege: the master secret reaches the sidecar only, injected.
                injected = {s["name"] for s in c.get("secrets", [])}
                check(admin[0] in injected, f"{path}: {admin[0]} is not injected into the sidecar")
                others = [o for o in td["containerDefinitions"] if o is not c]
                check(all(admin[0] not in {s["name"] for s in o.get("secrets", [])}
                          | {e["name"] for e in o.get("environment", [])} for o in others),
                      f"{path}: another container gets {admin[0]}")
        else:
            mounts = c.get("mountPoints", [])
            check(all(m.get("readOnly") for m in mounts), f"{path}: app mounts the volume writable")
    return td


def check_pgbouncer(td, sidecar, cmd, path):
    """`--pgbouncer`: a PgBouncer container reads the rendered pgbouncer.ini as the uid the
    files belong to (--owner), starts once the sidecar is healthy (the files exist), and the
    app starts after it."""
    def argv(c):
        return c.get("entryPoint", []) + c.get("command", [])
    bouncers = [c for c in td["containerDefinitions"]
                if any(a.endswith("/pgbouncer.ini") for a in argv(c)) and c is not sidecar]
    check(len(bouncers) == 1, f"{path}: --pgbouncer without one PgBouncer container reading pgbouncer.ini")
    if not bouncers:
        return
    bouncer = bouncers[0]
    owner = next((a.split("=", 1)[1] for a in cmd if a.startswith("--owner=")), None)
    check(owner is not None and bouncer.get("user") == owner,
          f"{path}: PgBouncer runs as {bouncer.get('user')}, the files belong to {owner} (0600)")
    deps = {(d["containerName"], d["condition"]) for d in bouncer.get("dependsOn", [])}
    check((sidecar["name"], "HEALTHY") in deps, f"{path}: PgBouncer starts before the sidecar is healthy")
    apps = [c for c in td["containerDefinitions"] if c is not sidecar and c is not bouncer]
    for app in apps:
        names = {d["containerName"] for d in app.get("dependsOn", [])}
        check(bouncer["name"] in names, f"{path}: {app['name']} does not wait for PgBouncer")
        check(app.get("user") == owner, f"{path}: {app['name']} runs as {app.get('user')}, pgpass belongs to {owner}")


def check_arm64_variant(path, x86_path):
    """The Graviton variant is the x86_64 task definition on ARM64 and nothing else (Fargate
    runs ARM64 on Linux only), so the two cannot drift apart."""
    td, x86 = json.load(open(path)), json.load(open(x86_path))
    check(td["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"},
          f"{path}: runtimePlatform {td['runtimePlatform']}")
    check(x86["runtimePlatform"]["cpuArchitecture"] == "X86_64", f"{x86_path}: not X86_64")
    check({**td, "runtimePlatform": x86["runtimePlatform"]} == x86, f"{path}: differs from {x86_path} beyond the architecture")


def check_copilot(path):
    m = yaml.safe_load(open(path))
    check(m.get("type") == "Load Balanced Web Service", f"{path}: not a Load Balanced Web Service")
    sidecars = m.get("sidecars", {})
    check(len(sidecars) == 1, f"{path}: expected one sidecar")
    name, sc = next(iter(sidecars.items()))
    check(sc.get("essential") is True, f"{path}: sidecar must be essential")
    hc = sc.get("healthcheck", {})
    check(hc.get("command") == HEALTH, f"{path}: sidecar healthcheck command {hc.get('command')}")
    secs = lambda v: int(re.fullmatch(r"(\d+)s", str(v)).group(1))
    interval, timeout, start = secs(hc["interval"]), secs(hc["timeout"]), secs(hc["start_period"])
    retries = hc["retries"]
    check(5 <= interval <= 300 and 2 <= timeout <= 60 and 1 <= retries <= 10 and 0 <= start <= 300,
          f"{path}: healthcheck outside ECS limits")
    check(health_budget(start, interval, retries) >= FIVE_MINUTES, f"{path}: healthcheck covers < 5 minutes")
    vols = m.get("storage", {}).get("volumes", {})
    check(len(vols) == 1, f"{path}: expected one storage volume")
    vname, vol = next(iter(vols.items()))
    check("efs" not in vol, f"{path}: the shared volume must not be EFS")
    check(vol.get("read_only") is True, f"{path}: the app must mount the volume read-only")
    mps = sc.get("mount_points", [])
    check(any(mp.get("source_volume") == vname and mp.get("read_only") is False and mp.get("path") == vol.get("path")
              for mp in mps), f"{path}: sidecar must mount {vname} read-write (Copilot defaults to read-only)")
    check(m.get("image", {}).get("depends_on", {}).get(name) == "healthy", f"{path}: app must depend on {name}: healthy")
    cmd = sc.get("command", [])
    check(cmd and cmd[0] == "run", f"{path}: sidecar command must be run")
    overrides = {o["path"]: o["value"] for o in m.get("taskdef_overrides", [])}
    if any(a.startswith("--drop-to") for a in cmd):
        check(overrides.get("ContainerDefinitions[1].User") == "0", f"{path}: --drop-to needs User 0 via taskdef_overrides")
    check("profile" in " ".join(m.get("command", [])), f"{path}: the app must source the profile")
    return name


def check_addon(path):
    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        # CloudFormation short forms (!Ref, !Join, ...) kept as {"!Ref": value}.
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"!" + suffix: value}

    Loader.add_multi_constructor("!", tagged)
    t = yaml.load(open(path), Loader=Loader)
    outputs = t["Outputs"]
    types = {k: v["Type"] for k, v in t["Resources"].items()}
    policy = [k for k, v in types.items() if v == "AWS::IAM::ManagedPolicy"]
    check(any(list(o["Value"].values())[0] in policy for o in outputs.values() if isinstance(o["Value"], dict) and "!Ref" in o["Value"]),
          f"{path}: no ManagedPolicy output for the task role")
    check("AuroraSidecarSecretId" in outputs and "!Join" in outputs["AuroraSidecarSecretId"]["Value"],
          f"{path}: the secret id must be a plain (Join) output so sidecars get it")
    # IAM authentication: the cluster flag follows the parameter, rds-db:connect is scoped
    # to one dbuser of this cluster, and the sidecar's IAM outputs exist only in IAM mode
    # (the secret id only in password mode).
    check("IAMAuth" in t.get("Conditions", {}), f"{path}: no IAMAuth condition")
    for name in ("AuroraSidecarIamAuth", "AuroraSidecarHost", "AuroraSidecarUser", "appdbIAMConnectPolicyArn"):
        check(outputs.get(name, {}).get("Condition") == "IAMAuth", f"{path}: output {name} must exist under IAMAuth")
    check(outputs["AuroraSidecarSecretId"].get("Condition") == "PasswordAuth", f"{path}: secret id output outside IAM mode only")
    connect = t["Resources"].get("appdbIAMConnectPolicy", {})
    stmt = connect.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [{}])[0]
    check(stmt.get("Action") == "rds-db:connect" and ":dbuser:${appdbDBCluster.DBClusterResourceId}/" in str(stmt.get("Resource")),
          f"{path}: rds-db:connect must be scoped to the cluster's resource id and one user")
    secret = next(v for v in t["Resources"].values() if v["Type"] == "AWS::SecretsManager::Secret")
    tags = {tag["Key"] for tag in secret["Properties"].get("Tags", [])}
    check({"copilot-application", "copilot-environment"} <= tags, f"{path}: secret lacks the Copilot tags")
    pg = next(v for v in t["Resources"].values() if v["Type"] == "AWS::RDS::DBClusterParameterGroup")
    check(pg["Properties"]["Parameters"].get("rds.force_ssl") == "1", f"{path}: rds.force_ssl must be 1")
    cluster = next(v for v in t["Resources"].values() if v["Type"] == "AWS::RDS::DBCluster")
    check("SecondsUntilAutoPause" in cluster["Properties"]["ServerlessV2ScalingConfiguration"], f"{path}: no auto-pause")
    check(cluster["Properties"].get("EnableIAMDatabaseAuthentication") == {"!If": ["IAMAuth", True, False]},
          f"{path}: IAM database authentication must follow appdbIAMAuth")


def main():
    shape = register_shape()
    for path in ("deploy/ecs/task-definition.json", "deploy/ecs/task-definition.once.json",
                 "deploy/ecs/task-definition.iam.json", "deploy/ecs/task-definition.least-privilege.json",
                 "deploy/ecs/task-definition.arm64.json", "deploy/ecs/task-definition.express.json",
                 "deploy/ecs/task-definition.dsql.json", "deploy/ecs/task-definition.pgbouncer.json"):
        check_task_definition(path, shape)
    check_arm64_variant("deploy/ecs/task-definition.arm64.json", "deploy/ecs/task-definition.json")
    check_copilot("copilot/api/manifest.yml")
    check_addon("copilot/api/addons/appdb.yml")
    # The checks must be able to fail: a broken copy of the task definition is refused.
    broken = json.load(open("deploy/ecs/task-definition.json"))
    broken["containerDefinitions"][1]["healthCheck"]["interval"] = "10"
    del broken["family"]
    report = ParamValidator().validate(broken, shape)
    check(report.has_errors(), "botocore accepted a task definition without family and with a string interval")
    # ... and an IAM-only sidecar handed the app's secret is refused by the rules here.
    given = json.load(open("deploy/ecs/task-definition.dsql.json"))
    sidecar = next(c for c in given["containerDefinitions"] if "aurora-sidecar" in c["image"])
    sidecar["secrets"] = [{"name": "DB_SECRET", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db"}]
    check(len(task_definition_failures(given, "dsql with a secret")) == 2,
          "a DSQL task definition given the app's secret passed the checks")
    # ... and a PgBouncer that does not wait for the sidecar, or runs as another uid.
    given = json.load(open("deploy/ecs/task-definition.pgbouncer.json"))
    bouncer = next(c for c in given["containerDefinitions"] if c["name"] == "pgbouncer")
    bouncer["dependsOn"], bouncer["user"] = [], "70:70"
    check(len(task_definition_failures(given, "pgbouncer out of order")) == 2,
          "a PgBouncer container started early as another uid passed the checks")
    if failures:
        print("\n".join(f"FAIL {f}" for f in failures))
        sys.exit(1)
    print("deploy checks: task definitions valid for RegisterTaskDefinition (botocore "
          f"{botocore.__version__}), ECS dependency and health-check rules hold, Copilot manifest and addon as documented")


if __name__ == "__main__":
    main()
