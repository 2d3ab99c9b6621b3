"""A complete example to `cdk deploy`: a VPC, Aurora Serverless v2 PostgreSQL (min 0 ACU,
auto-pause, TLS forced, the master secret managed by RDS), and a Fargate service whose app
starts only once aurora-sidecar says the database is usable.

    cdk deploy                          # password variant (the RDS-managed master secret)
    cdk deploy -c auth=iam              # IAM variant (tokens, no password anywhere)
    cdk deploy -c auth=dsql             # Aurora DSQL instead of Aurora (role "app", which
                                        # must be created and granted first: README)
    cdk deploy -c appRole=app           # least privilege: the app logs in as role "app",
                                        # set up by the sidecar with the master secret
    cdk deploy -c arch=arm64            # Graviton: the task on ARM64 (the app image too)
    cdk deploy -c pgbouncerImage=…/pgbouncer:1.24
                                        # PgBouncer between the app and the cluster, so
                                        # the cluster pauses while the app idles
    cdk deploy -c sidecarImage=…/aurora-sidecar:0.1.0 -c appImage=…/my-app:latest

Everything here is least-privilege and passes cdk-nag's AwsSolutions checks (v3: a CDK
policy-validation plugin, so `cdk synth` fails on a finding); the few acknowledged rules
carry their reason (deploy/cdk/README.md lists them).
"""
import json
import os
from typing import Optional

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dsql as dsql
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import Acknowledgment, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from aurora_sidecar_cdk import AuroraSidecar, DsqlAuth, IamAuth

APP_UID = "1000:1000"
CLUSTER_ID = "aurora-sidecar-example"
DATABASE = "app"


# The task's CPU architecture; the sidecar's multi-architecture image serves both.
ARCHITECTURES = {"x86_64": ecs.CpuArchitecture.X86_64, "arm64": ecs.CpuArchitecture.ARM64}


class AppStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, auth: str, sidecar_image: str,
                 app_image: str, app_role: str = "", arch: str = "x86_64", pgbouncer_image: str = "",
                 **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=1)
        vpc.add_flow_log("FlowLogs", destination=ec2.FlowLogDestination.to_cloud_watch_logs(
            logs.LogGroup(self, "FlowLogGroup", retention=logs.RetentionDays.ONE_MONTH)))
        # Aurora DSQL is reached at its public endpoint (through the NAT gateway), with
        # IAM tokens; the Aurora variants get their cluster in the VPC.
        if auth == "dsql":
            target = dict(dsql=DsqlAuth(cluster=dsql.CfnCluster(self, "Dsql", deletion_protection_enabled=True),
                                        user=app_role or "app"))
        else:
            target = self.aurora(vpc, auth, app_role)

        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        task = ecs.FargateTaskDefinition(
            self, "Task", cpu=512, memory_limit_mib=1024,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ARCHITECTURES[arch],
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX))
        app = task.add_container(
            "app",
            container_name="app",
            image=ecs.ContainerImage.from_registry(app_image),
            user=APP_UID,
            port_mappings=[ecs.PortMapping(container_port=4000)],
            entry_point=["/bin/sh", "-c"],
            command=[". /run/aurora-sidecar/application.profile && exec /app/bin/server"],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="app", log_group=log_group),
        )
        service_sg = ec2.SecurityGroup(self, "ServiceSg", vpc=vpc, description="The app tasks")
        AuroraSidecar(
            self, "AuroraSidecar",
            task_definition=task,
            app_container=app,
            image=ecs.ContainerImage.from_registry(sidecar_image),
            app_uid=APP_UID,
            service_security_group=service_sg,
            log_group=log_group,
            pgbouncer_image=ecs.ContainerImage.from_registry(pgbouncer_image) if pgbouncer_image else None,
            **target,
        )
        ecs.FargateService(
            self, "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=1,
            security_groups=[service_sg],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        suppress(self, target.get("cluster"))

    def aurora(self, vpc: ec2.IVpc, auth: str, app_role: str) -> dict:
        """The Aurora Serverless v2 cluster and the sidecar's credentials for it."""
        db = rds.DatabaseCluster(
            self, "Db",
            # A current major version (scaling to 0 ACU needs 16.3+ or 17).
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=rds.AuroraPostgresEngineVersion.VER_17_7),
            writer=rds.ClusterInstance.serverless_v2("writer"),
            serverless_v2_min_capacity=0,
            serverless_v2_max_capacity=4,
            # Pause after 5 idle minutes. The sidecar holds no connection while idle, but a
            # running app's connection pool does (Ecto keeps pool_size connections open and
            # pinged): the cluster pauses only while no task runs (the service scaled to 0,
            # or between scheduled tasks), or behind a pooler that closes idle connections
            # (-c pgbouncerImage=…: PgBouncer closes them after 60 s).
            serverless_v2_auto_pause_duration=Duration.minutes(5),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            default_database_name=DATABASE,
            # The master password is managed by RDS (rotated every 7 days); its secret
            # holds only username and password, so host and port come from the cluster.
            manage_master_user_password=True,
            storage_encrypted=True,
            deletion_protection=True,
            removal_policy=RemovalPolicy.SNAPSHOT,
            iam_authentication=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            cluster_identifier=CLUSTER_ID,
            cloudwatch_logs_exports=["postgresql"],
            parameters={"rds.force_ssl": "1"},
        )
        # The log group RDS exports to, made here with a retention (CDK's
        # cloudwatch_logs_retention would add a Lambda function to set one).
        db.node.add_dependency(logs.LogGroup(
            self, "DbLogs", log_group_name=f"/aws/rds/cluster/{CLUSTER_ID}/postgresql",
            retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.RETAIN))
        cfn_db: rds.CfnDBCluster = db.node.default_child
        master_secret = secretsmanager.Secret.from_secret_complete_arn(
            self, "MasterSecret", cfn_db.attr_master_user_secret_secret_arn)

        if auth == "iam":
            # IAM needs a role other than the master user (RDS grants rds_iam to roles).
            credentials = dict(iam_auth=IamAuth(user=app_role or "app"))
        elif app_role:
            credentials = dict(secret=app_secret(self, app_role))
        else:
            credentials = dict(secret=master_secret)
        if app_role:
            credentials["admin_secret"] = master_secret
        return dict(cluster=db, database=DATABASE, **credentials)


def app_secret(stack: Stack, role: str) -> secretsmanager.Secret:
    """The app role's own password: generated, injected into the sidecar only, set on the
    server by the sidecar (as a SCRAM verifier, through the master secret)."""
    secret = secretsmanager.Secret(
        stack, "AppSecret",
        description=f"The password of the database role {role}; aurora-sidecar sets it on the cluster.",
        generate_secret_string=secretsmanager.SecretStringGenerator(
            secret_string_template=json.dumps({"username": role}),
            generate_string_key="password",
            exclude_characters="\"\\",
        ),
    )
    Validations.of(secret).acknowledge(
        Acknowledgment(id="AwsSolutions-SMG4", reason="Rotating the app role's password is changing this "
                       "secret: aurora-sidecar run sets the new verifier through the master secret, validates "
                       "and publishes it (README, Least privilege); no rotation Lambda is needed for that."),
    )
    return secret


def suppress(stack: Stack, db: Optional[rds.DatabaseCluster]) -> None:
    """The cdk-nag findings this example accepts, each with the reason a reviewer gets."""
    if db is not None:
        Validations.of(db).acknowledge(
            Acknowledgment(id="AwsSolutions-RDS11", reason="The default PostgreSQL port: only the service's "
                           "security group may reach it, and a non-standard port hides nothing from a scan."),
        )
    Validations.of(stack).acknowledge(
        Acknowledgment(id="AwsSolutions-ECS2", reason="The environment variables are host names, ports, user "
                       "names and file paths; the one secret is injected with `secrets` (valueFrom)."),
    )


def main() -> None:
    app = cdk.App()

    auth = app.node.try_get_context("auth") or "password"
    app_role = app.node.try_get_context("appRole") or ""
    arch = app.node.try_get_context("arch") or "x86_64"
    if auth not in ("password", "iam", "dsql"):
        raise SystemExit("context auth is 'password', 'iam' or 'dsql'")
    if arch not in ARCHITECTURES:
        raise SystemExit("context arch is 'x86_64' or 'arm64'")
    suffix = (f"-{app_role}" if app_role else "") + ("-arm64" if arch == "arm64" else "")
    AppStack(
        app, f"AuroraSidecarExample-{auth}{suffix}",
        auth=auth,
        app_role=app_role,
        arch=arch,
        pgbouncer_image=app.node.try_get_context("pgbouncerImage") or "",
        sidecar_image=app.node.try_get_context("sidecarImage")
        or "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aurora-sidecar:0.1.0",
        app_image=app.node.try_get_context("appImage") or "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-app:latest",
        # CDK_DEFAULT_ACCOUNT/REGION come from the CLI's credentials on `cdk deploy`;
        # without them the stack stays environment-agnostic.
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    app.synth()


if __name__ == "__main__":
    main()
