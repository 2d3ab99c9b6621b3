"""Synthesizes the example (every variant) and checks what a reviewer would: the containers,
mounts, dependsOn and health check; the exact IAM statements; the ingress rule; cdk-nag's
AwsSolutions checks with no unsuppressed error; cfn-lint on the templates; and the ECS
rules scripts/check_deploy.py applies to the hand-written task definitions.

Run by scripts/validate-deploy in its CDK venv: python -m unittest discover -s deploy/cdk
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import aws_cdk as cdk
from aws_cdk import aws_dsql as dsql
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_rds as rds
from aws_cdk import Validations
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))

import check_deploy  # noqa: E402
from app import AppStack  # noqa: E402
from aurora_sidecar_cdk import AuroraSidecar, DsqlAuth, IamAuth  # noqa: E402

SIDECAR_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aurora-sidecar:0.1.0"
HEALTH = ["CMD", "/usr/local/bin/aurora-sidecar", "health"]


# (auth, app role, architecture): the master secret as the app's, IAM, both least-privilege
# variants, and the first on Graviton.
VARIANTS = (("password", "", "x86_64"), ("iam", "", "x86_64"), ("password", "app", "x86_64"),
            ("iam", "app", "x86_64"), ("password", "", "arm64"))


def example(app, auth, app_role="", arch="x86_64"):
    # Environment-agnostic, as `cdk synth` without an account is: AZs and ARNs resolve at
    # deploy time.
    return AppStack(app, f"Example-{auth}{app_role}-{arch.replace('_', '-')}", auth=auth, app_role=app_role,
                    arch=arch, sidecar_image=SIDECAR_IMAGE,
                    app_image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-app:latest")


def synth(auth, app_role="", arch="x86_64"):
    stack = example(cdk.App(), auth, app_role, arch)
    return stack, Template.from_stack(stack)


def api_shape(value):
    """A CloudFormation task definition in the shape of the RegisterTaskDefinition API
    (camelCase keys), deploy-time values (Ref, Fn::*) as placeholder strings."""
    if isinstance(value, dict):
        keys = list(value)
        if len(keys) == 1 and (keys[0] == "Ref" or keys[0].startswith("Fn::")):
            return "resolved-at-deploy"
        return {(k[0].lower() + k[1:]): api_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [api_shape(v) for v in value]
    return value


def only(template, kind):
    found = list(template.find_resources(kind).values())
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def containers(template):
    props = only(template, "AWS::ECS::TaskDefinition")["Properties"]
    return {c["Name"]: c for c in props["ContainerDefinitions"]}


def statements(template, role_logical_prefix):
    out = []
    for name, policy in template.find_resources("AWS::IAM::Policy").items():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_logical_prefix in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


class Example(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stacks = {f"{auth}{role}{'' if arch == 'x86_64' else arch}": synth(auth, role, arch)
                      for auth, role, arch in VARIANTS}

    def test_the_sidecar_the_volume_and_the_apps_dependency(self):
        for auth, (_, template) in self.stacks.items():
            with self.subTest(auth=auth):
                c = containers(template)
                self.assertEqual(set(c), {"app", "aurora-sidecar"})
                sidecar, app = c["aurora-sidecar"], c["app"]
                self.assertTrue(sidecar["Essential"])
                self.assertEqual(sidecar["User"], "0")
                self.assertEqual(sidecar["Command"][:4],
                                 ["run", "--drop-to=65532:65532", "--owner=1000:1000", "--sslmode=verify-full"])
                self.assertEqual(sidecar["HealthCheck"], {"Command": HEALTH, "Interval": 10, "Retries": 10,
                                                          "StartPeriod": 300, "Timeout": 5})
                self.assertEqual(sidecar["MountPoints"], [{"ContainerPath": "/run/aurora-sidecar",
                                                           "ReadOnly": False, "SourceVolume": "aurora-sidecar"}])
                self.assertEqual(app["MountPoints"], [{"ContainerPath": "/run/aurora-sidecar",
                                                       "ReadOnly": True, "SourceVolume": "aurora-sidecar"}])
                self.assertEqual(app["DependsOn"], [{"Condition": "HEALTHY", "ContainerName": "aurora-sidecar"}])
                volumes = only(template, "AWS::ECS::TaskDefinition")["Properties"]["Volumes"]
                self.assertEqual(volumes, [{"Name": "aurora-sidecar"}])
                env = {e["Name"] for e in sidecar["Environment"]}
                self.assertTrue({"AURORA_SIDECAR_HOST", "AURORA_SIDECAR_PORT"} <= env)

    def test_password_variant_injects_the_master_secret_into_the_sidecar_only(self):
        _, template = self.stacks["password"]
        c = containers(template)
        secret_ref = c["aurora-sidecar"]["Secrets"][0]
        self.assertEqual(secret_ref["Name"], "DB_SECRET")
        self.assertIn("MasterUserSecret.SecretArn", json.dumps(secret_ref["ValueFrom"]))
        self.assertNotIn("Secrets", c["app"])
        # The execution role reads that one secret; the task role reads no secret at all.
        execution = statements(template, "TaskExecutionRole")
        reads = [s for s in execution if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
        self.assertEqual(len(reads), 1)
        self.assertIn("MasterUserSecret.SecretArn", json.dumps(reads[0]["Resource"]))
        self.assertNotEqual(reads[0]["Resource"], "*")
        task = statements(template, "TaskTaskRole")
        self.assertFalse(any("secretsmanager" in json.dumps(s["Action"]) for s in task))
        db = only(template, "AWS::RDS::DBCluster")["Properties"]
        self.assertTrue(db["ManageMasterUserPassword"])
        self.assertNotIn("MasterUserPassword", db)
        self.assertEqual(template.find_resources("AWS::SecretsManager::Secret"), {})

    def test_iam_variant_grants_rds_db_connect_on_one_dbuser_only(self):
        _, template = self.stacks["iam"]
        c = containers(template)
        self.assertIn("--iam-auth", c["aurora-sidecar"]["Command"])
        self.assertNotIn("Secrets", c["aurora-sidecar"])
        task = statements(template, "TaskTaskRole")
        self.assertEqual(len(task), 1, task)
        self.assertEqual(task[0]["Action"], "rds-db:connect")
        arn = json.dumps(task[0]["Resource"])
        self.assertIn(":dbuser:", arn)
        self.assertIn("DBClusterResourceId", arn)
        self.assertTrue(arn.endswith('/app"]]}'), arn)
        self.assertFalse(any("secretsmanager" in json.dumps(s["Action"]) for s in statements(template, "Execution")))

    def test_least_privilege_injects_the_master_secret_into_the_sidecar_only(self):
        for variant in ("passwordapp", "iamapp"):
            with self.subTest(variant=variant):
                _, template = self.stacks[variant]
                c = containers(template)
                sidecar = c["aurora-sidecar"]
                self.assertIn("--admin-secret-env=DB_ADMIN_SECRET", sidecar["Command"])
                injected = {s["Name"]: json.dumps(s["ValueFrom"]) for s in sidecar["Secrets"]}
                self.assertIn("MasterUserSecret.SecretArn", injected["DB_ADMIN_SECRET"])
                self.assertNotIn("Secrets", c["app"])
                self.assertFalse(any("secretsmanager" in json.dumps(s["Action"])
                                     for s in statements(template, "TaskTaskRole")))
                if variant == "passwordapp":
                    self.assertIn("AppSecret", injected["DB_SECRET"])
                    secret = only(template, "AWS::SecretsManager::Secret")["Properties"]
                    template_json = json.loads(secret["GenerateSecretString"]["SecretStringTemplate"])
                    self.assertEqual(template_json, {"username": "app"})
                else:
                    self.assertNotIn("DB_SECRET", injected)
                    task = statements(template, "TaskTaskRole")
                    self.assertEqual([s["Action"] for s in task], ["rds-db:connect"])
                    self.assertTrue(json.dumps(task[0]["Resource"]).endswith('/app"]]}'))
                # The execution role reads the secrets it injects, and only those.
                reads = [s for s in statements(template, "TaskExecutionRole")
                         if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
                self.assertEqual(len(reads), len(injected), reads)

    def test_the_cluster_admits_the_service_on_its_port_and_is_hardened(self):
        for auth, (_, template) in self.stacks.items():
            with self.subTest(auth=auth):
                template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
                    "IpProtocol": "tcp",
                    "SourceSecurityGroupId": {"Fn::GetAtt": [Match.string_like_regexp("ServiceSg"), "GroupId"]},
                    "FromPort": {"Fn::GetAtt": [Match.any_value(), "Endpoint.Port"]},
                })
                db = only(template, "AWS::RDS::DBCluster")["Properties"]
                self.assertTrue(db["StorageEncrypted"] and db["DeletionProtection"])
                self.assertTrue(db["EnableIAMDatabaseAuthentication"])
                self.assertEqual(db["ServerlessV2ScalingConfiguration"]["MinCapacity"], 0)
                self.assertEqual(db["ServerlessV2ScalingConfiguration"]["SecondsUntilAutoPause"], 300)
                params = only(template, "AWS::RDS::DBClusterParameterGroup")["Properties"]["Parameters"]
                self.assertEqual(params["rds.force_ssl"], "1")
                for group in template.find_resources("AWS::Logs::LogGroup").values():
                    self.assertIn("RetentionInDays", group["Properties"])

    def test_the_task_runs_on_the_architecture_asked_for(self):
        for name, (_, template) in self.stacks.items():
            with self.subTest(variant=name):
                platform = only(template, "AWS::ECS::TaskDefinition")["Properties"]["RuntimePlatform"]
                self.assertEqual(platform, {"CpuArchitecture": "ARM64" if name.endswith("arm64") else "X86_64",
                                            "OperatingSystemFamily": "LINUX"})
        # The Graviton variant differs in nothing else: the same containers.
        self.assertEqual(containers(self.stacks["passwordarm64"][1]), containers(self.stacks["password"][1]))

    def test_cdk_nag_finds_nothing_unacknowledged(self):
        # cdk-nag 3 is a policy-validation plugin: a finding that is not acknowledged fails
        # the synth itself (as `cdk synth` and `cdk deploy` would), with the report.
        for auth, role, arch in VARIANTS:
            with self.subTest(auth=auth, role=role, arch=arch), tempfile.TemporaryDirectory() as out:
                app = cdk.App(outdir=out, context={"@aws-cdk/core:validationReportJson": True})
                example(app, auth, role, arch)
                Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
                try:
                    app.synth()
                except Exception as e:  # jsii raises the JavaScript error as RuntimeError
                    self.fail(f"cdk-nag: {e}")
                with open(os.path.join(out, "policy-validation-report.json")) as f:
                    report = json.load(f)
                violations = [v for p in report["pluginReports"] for v in p.get("violations", [])]
                self.assertEqual(violations, [])

    def test_cdk_nag_would_catch_a_finding(self):
        # The check above can fail: the same example with a wildcard grant is refused.
        with tempfile.TemporaryDirectory() as out:
            app = cdk.App(outdir=out)
            stack = example(app, "password")
            task = next(c for c in stack.node.find_all() if isinstance(c, ecs.FargateTaskDefinition))
            from aws_cdk import aws_iam as iam
            task.add_to_task_role_policy(iam.PolicyStatement(actions=["secretsmanager:*"], resources=["*"]))
            Validations.of(app).add_plugins(AwsSolutionsChecks(app))
            print("\n(an expected cdk-nag report follows: the check refusing a wildcard grant)", file=sys.stderr)
            with self.assertRaises(Exception):
                app.synth()

    def test_cfn_lint_passes_on_both_templates(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for auth, (_, template) in self.stacks.items():
                path = os.path.join(tmp, f"{auth}.json")
                with open(path, "w") as f:
                    json.dump(template.to_json(), f)
                paths.append(path)
            cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
            lint = subprocess.run([cfn_lint, *paths], capture_output=True, text=True)
            self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)

    def test_the_task_definition_passes_the_ecs_checks(self):
        for auth, (_, template) in self.stacks.items():
            with self.subTest(auth=auth):
                td = api_shape(only(template, "AWS::ECS::TaskDefinition")["Properties"])
                td["family"] = td.get("family", "example")
                self.assertEqual(check_deploy.task_definition_failures(td, f"synthesized {auth}"), [])


class DsqlExample(unittest.TestCase):
    """`-c auth=dsql`: Aurora DSQL instead of Aurora, no secret anywhere."""

    @classmethod
    def setUpClass(cls):
        cls.stack, cls.template = synth("dsql")

    def test_the_sidecar_signs_dsql_tokens_for_one_cluster_with_no_secret(self):
        c = containers(self.template)
        sidecar = c["aurora-sidecar"]
        self.assertEqual(sidecar["Command"], ["run", "--drop-to=65532:65532", "--owner=1000:1000",
                                              "--sslmode=verify-full", "--dsql"])
        env = {e["Name"]: e["Value"] for e in sidecar["Environment"]}
        self.assertIn("Endpoint", json.dumps(env["AURORA_SIDECAR_HOST"]))
        self.assertEqual(env["AURORA_SIDECAR_USER"], "app")
        self.assertNotIn("AURORA_SIDECAR_DATABASE", env)
        self.assertNotIn("Secrets", sidecar)
        self.assertNotIn("Secrets", c["app"])
        task = statements(self.template, "TaskTaskRole")
        self.assertEqual([s["Action"] for s in task], ["dsql:DbConnect"])
        self.assertIn("ResourceArn", json.dumps(task[0]["Resource"]))
        self.assertEqual(self.template.find_resources("AWS::RDS::DBCluster"), {})
        self.assertEqual(self.template.find_resources("AWS::EC2::SecurityGroupIngress"), {})
        self.assertTrue(only(self.template, "AWS::DSQL::Cluster")["Properties"]["DeletionProtectionEnabled"])
        self.assertFalse(any("secretsmanager" in json.dumps(s["Action"])
                             for s in statements(self.template, "Execution")))

    def test_cdk_nag_cfn_lint_and_the_ecs_checks_pass(self):
        with tempfile.TemporaryDirectory() as out:
            app = cdk.App(outdir=out)
            stack = example(app, "dsql")
            Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
            try:
                assembly = app.synth()
            except Exception as e:  # jsii raises the JavaScript error as RuntimeError
                self.fail(f"cdk-nag: {e}")
            path = os.path.join(out, assembly.get_stack_by_name(stack.stack_name).template_file)
            cfn_lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
            lint = subprocess.run([cfn_lint, path], capture_output=True, text=True)
            self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)
        td = api_shape(only(self.template, "AWS::ECS::TaskDefinition")["Properties"])
        td["family"] = "dsql"
        self.assertEqual(check_deploy.task_definition_failures(td, "synthesized dsql"), [])


class DsqlAdminSetUp(unittest.TestCase):
    """`DsqlAuth(admin_set_up=True)`: the sidecar creates and grants the app role as DSQL's
    admin, mapping it to the task role's own ARN."""

    def test_the_admin_flags_name_the_task_role_and_it_may_connect_as_admin(self):
        stack = cdk.Stack(cdk.App(), "D", env=cdk.Environment(account="123456789012", region="eu-west-1"))
        task = ecs.FargateTaskDefinition(stack, "Task")
        app = task.add_container("app", image=ecs.ContainerImage.from_registry("app"))
        cluster = dsql.CfnCluster(stack, "Dsql", deletion_protection_enabled=True)
        AuroraSidecar(stack, "S", task_definition=task, app_container=app,
                      image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE),
                      dsql=DsqlAuth(cluster=cluster, user="app", admin_set_up=True))
        template = Template.from_stack(stack)
        sidecar = containers(template)["aurora-sidecar"]
        self.assertIn("--admin-iam-user=admin", sidecar["Command"])
        env = {e["Name"]: e["Value"] for e in sidecar["Environment"]}
        grant = json.dumps(env["AURORA_SIDECAR_DSQL_GRANT_ARN"])
        self.assertIn("TaskTaskRole", grant)
        self.assertIn("Arn", grant)
        policy = statements(template, "TaskTaskRole")
        self.assertEqual([s["Action"] for s in policy], [["dsql:DbConnect", "dsql:DbConnectAdmin"]])
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "AsAdmin", task_definition=task, app_container=app,
                          image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE),
                          dsql=DsqlAuth(cluster=cluster, user="admin", admin_set_up=True))


class Construct(unittest.TestCase):
    def stack(self):
        stack = cdk.Stack(cdk.App(), "T", env=cdk.Environment(account="123456789012", region="eu-west-1"))
        vpc = ec2.Vpc(stack, "Vpc")
        db = rds.DatabaseCluster(stack, "Db", vpc=vpc, writer=rds.ClusterInstance.serverless_v2("w"),
                                 engine=rds.DatabaseClusterEngine.aurora_postgres(
                                     version=rds.AuroraPostgresEngineVersion.VER_16_6))
        task = ecs.FargateTaskDefinition(stack, "Task")
        app = task.add_container("app", image=ecs.ContainerImage.from_registry("app"))
        return stack, db, task, app

    def test_exactly_one_credential_source(self):
        stack, db, task, app = self.stack()
        image = ecs.ContainerImage.from_registry(SIDECAR_IMAGE)
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "Both", task_definition=task, app_container=app, image=image, cluster=db,
                          secret=db.secret, iam_auth=IamAuth(user="app"))
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "None", task_definition=task, app_container=app, image=image, cluster=db)

    def test_dsql_takes_no_secret_and_grants_db_connect_admin_only_to_admin(self):
        stack, db, task, app = self.stack()
        cluster = dsql.CfnCluster(stack, "Dsql")
        image = ecs.ContainerImage.from_registry(SIDECAR_IMAGE)
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "Both", task_definition=task, app_container=app, image=image, cluster=db,
                          dsql=DsqlAuth(cluster=cluster, user="app"))
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "Secret", task_definition=task, app_container=app, image=image,
                          dsql=DsqlAuth(cluster=cluster, user="app"), secret=db.secret)
        AuroraSidecar(stack, "S", task_definition=task, app_container=app, image=image,
                      dsql=DsqlAuth(cluster=cluster, user="admin"))
        task_statements = statements(Template.from_stack(stack), "TaskTaskRole")
        self.assertEqual([s["Action"] for s in task_statements], ["dsql:DbConnectAdmin"])

    def test_once_is_not_essential_and_the_app_waits_for_success(self):
        stack, db, task, app = self.stack()
        AuroraSidecar(stack, "S", task_definition=task, app_container=app, mode="once", cluster=db,
                      image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE), secret=db.secret)
        c = containers(Template.from_stack(stack))
        self.assertFalse(c["aurora-sidecar"]["Essential"])
        self.assertEqual(c["aurora-sidecar"]["Command"][0], "once")
        self.assertEqual(c[next(n for n in c if n != "aurora-sidecar")]["DependsOn"],
                         [{"Condition": "SUCCESS", "ContainerName": "aurora-sidecar"}])

    def test_a_secret_read_by_the_sidecar_is_granted_to_the_task_role(self):
        stack, db, task, app = self.stack()
        AuroraSidecar(stack, "S", task_definition=task, app_container=app, cluster=db, inject_secret=False,
                      image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE), secret=db.secret)
        template = Template.from_stack(stack)
        task_statements = statements(template, "TaskTaskRole")
        actions = sorted(a for s in task_statements for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                             else s["Action"]))
        self.assertEqual(actions, ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"])
        env = {e["Name"] for e in containers(template)["aurora-sidecar"]["Environment"]}
        self.assertIn("AURORA_SIDECAR_SECRET_ID", env)

    def test_pgbouncer_reads_the_files_as_the_app_and_starts_between_the_sidecar_and_the_app(self):
        stack, db, task, app = self.stack()
        AuroraSidecar(stack, "S", task_definition=task, app_container=app, cluster=db, secret=db.secret,
                      image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE),
                      pgbouncer_image=ecs.ContainerImage.from_registry("pgbouncer:1.24"))
        template = Template.from_stack(stack)
        c = containers(template)
        sidecar, bouncer = c["aurora-sidecar"], c["pgbouncer"]
        app_c = c[next(n for n in c if n not in ("aurora-sidecar", "pgbouncer"))]
        self.assertIn("--pgbouncer", sidecar["Command"])
        self.assertEqual((bouncer["User"], bouncer["EntryPoint"], bouncer["Command"]),
                         ("1000:1000", ["pgbouncer"], ["/run/aurora-sidecar/pgbouncer.ini"]))
        self.assertTrue(bouncer["Essential"])
        self.assertEqual(bouncer["MountPoints"], [{"ContainerPath": "/run/aurora-sidecar",
                                                   "ReadOnly": True, "SourceVolume": "aurora-sidecar"}])
        self.assertEqual(bouncer["DependsOn"], [{"Condition": "HEALTHY", "ContainerName": "aurora-sidecar"}])
        self.assertIn({"Condition": "START", "ContainerName": "pgbouncer"}, app_c["DependsOn"])
        # The app's own uid is set in a real task; the ECS rules want it equal to --owner.
        td = api_shape(only(template, "AWS::ECS::TaskDefinition")["Properties"])
        td["family"] = "pgbouncer"
        for container in td["containerDefinitions"]:
            if container["name"] not in ("aurora-sidecar", "pgbouncer"):
                container["user"] = "1000:1000"
        self.assertEqual(check_deploy.task_definition_failures(td, "synthesized pgbouncer"), [])
        with self.assertRaises(ValueError):
            AuroraSidecar(stack, "Once", task_definition=task, app_container=app, cluster=db, secret=db.secret,
                          mode="once", image=ecs.ContainerImage.from_registry(SIDECAR_IMAGE),
                          pgbouncer_image=ecs.ContainerImage.from_registry("pgbouncer:1.24"))


if __name__ == "__main__":
    unittest.main()
