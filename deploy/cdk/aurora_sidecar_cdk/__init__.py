"""aurora-sidecar for AWS CDK v2 (Python): one construct that adds the sidecar to any
Fargate (or EC2) task definition.

    AuroraSidecar(self, "Db", task_definition=task_def, app_container=app,
                  image=ecs.ContainerImage.from_registry("…/aurora-sidecar:0.1.0"),
                  cluster=db, secret=db.secret)

adds, in one call: the sidecar container (`run`, essential, or `once`, not essential),
the shared volume (read-write for the sidecar, read-only for the app), the app's
`dependsOn` (HEALTHY, or SUCCESS for `once`), the exec-form `health` check with a start
period that covers an Aurora resume, `--drop-to`/`--owner` for the app's uid,
`--sslmode verify-full` with the bundled RDS CA, the credentials and their IAM, and the
network path from the service to the cluster; with `pgbouncer_image`, PgBouncer between
the app and the cluster (`--pgbouncer`).
"""
from dataclasses import dataclass
from typing import Optional

from aws_cdk import ArnFormat, Duration, Stack, Token
from aws_cdk import aws_dsql as dsql
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

SIDECAR = "aurora-sidecar"
OUT_DIR = "/run/aurora-sidecar"
HEALTH_COMMAND = ["CMD", "/usr/local/bin/aurora-sidecar", "health"]
# The sidecar drops from root to this uid at once (--drop-to), keeping CAP_CHOWN only to
# hand pgpass to the app's uid (--owner).
SIDECAR_UID = "65532:65532"


@dataclass(frozen=True)
class IamAuth:
    """IAM database authentication: no password anywhere. `user` logs in with tokens
    (it must be granted rds_iam in the database)."""

    user: str


@dataclass(frozen=True)
class DsqlAuth:
    """Aurora DSQL: tokens for `user` (`dsql:DbConnect`; `dsql:DbConnectAdmin` for the
    `admin` role), the one database `postgres`, TLS verified against the image's system
    roots. A custom role must exist and be granted to the task role first (README, "Aurora
    DSQL": `CREATE ROLE … WITH LOGIN; AWS IAM GRANT … TO '<task role ARN>'`), unless
    `admin_set_up`: then the sidecar does it as `admin` on the first start
    (`--admin-iam-user admin`, `--dsql-grant-arn` the task role's ARN), and the task role
    gets `dsql:DbConnectAdmin` on the cluster as well."""

    cluster: dsql.CfnCluster
    user: str
    admin_set_up: bool = False


class AuroraSidecar(Construct):
    """Adds aurora-sidecar to `task_definition` beside `app_container`.

    Credentials, one of:
    - `secret`: a Secrets Manager secret. With `inject_secret=True` (the default) it is
      injected into the sidecar only, as DB_SECRET, through the execution role: neither the
      app container nor the task role can read it. With `inject_secret=False` the sidecar
      reads it itself (`--secret-id`: a rotated secret is picked up while the task runs)
      and the task role gets GetSecretValue and DescribeSecret on that one secret (and
      kms:Decrypt when it has its own key).
    - `iam_auth`: IAM tokens for `iam_auth.user`; the task role gets rds-db:connect on
      exactly that user's dbuser ARN, built from the cluster's resource id.

    - `dsql` (instead of `cluster`): Aurora DSQL, no secret; the task role gets
      `dsql:DbConnect` (or `DbConnectAdmin`) on that one cluster.

    `cluster` (the Aurora cluster) gives the host and port (the RDS-managed master secret
    carries only username and password) and, with `service_security_group`, the ingress
    rule from the service to the cluster's port.

    Least privilege: with `admin_secret` (the cluster's master secret) the credentials
    above are the app's own role, and the master secret is injected into the sidecar only
    (`--admin-secret-env DB_ADMIN_SECRET`, through the execution role), which uses it
    only to set that role up when its login fails (the first start, or a rotation).

    Graviton: the sidecar runs on the task definition's architecture (its
    `runtime_platform`, e.g. `ecs.CpuArchitecture.ARM64`); give it an `image` that has that
    platform (the multi-architecture image has linux/amd64 and linux/arm64).

    PgBouncer: with `pgbouncer_image` (any image with a `pgbouncer` binary) the sidecar runs
    with `--pgbouncer`, a `pgbouncer` container (essential, as the app's uid: the files are
    0600) reads the rendered `pgbouncer.ini` once the sidecar is healthy, and the app waits
    for it too and reaches the cluster through it, so idle server connections close and the
    cluster can pause (README, "PgBouncer"). Needs `mode="run"`: the sidecar RELOADs
    PgBouncer after each rotation and token renewal.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        task_definition: ecs.TaskDefinition,
        app_container: ecs.ContainerDefinition,
        image: ecs.ContainerImage,
        cluster: Optional[rds.DatabaseCluster] = None,
        dsql: Optional[DsqlAuth] = None,
        secret: Optional[secretsmanager.ISecret] = None,
        inject_secret: bool = True,
        iam_auth: Optional[IamAuth] = None,
        admin_secret: Optional[secretsmanager.ISecret] = None,
        database: Optional[str] = None,
        mode: str = "run",
        app_uid: str = "1000:1000",
        service_security_group: Optional[ec2.ISecurityGroup] = None,
        log_group: Optional[logs.ILogGroup] = None,
        pgbouncer_image: Optional[ecs.ContainerImage] = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (cluster is None) == (dsql is None):
            raise ValueError("AuroraSidecar: give exactly one of cluster (Aurora) and dsql (Aurora DSQL)")
        if dsql is not None and (secret, iam_auth, admin_secret, database) != (None, None, None, None):
            raise ValueError("AuroraSidecar: Aurora DSQL takes no secret, admin secret or database (it has one, postgres)")
        if dsql is None and (secret is None) == (iam_auth is None):
            raise ValueError("AuroraSidecar: give exactly one of secret and iam_auth")
        if mode not in ("run", "once"):
            raise ValueError("AuroraSidecar: mode is 'run' or 'once'")
        if pgbouncer_image is not None and mode != "run":
            raise ValueError("AuroraSidecar: PgBouncer needs mode 'run' (the sidecar RELOADs it)")

        task_definition.add_volume(name=SIDECAR)
        command = [mode, f"--drop-to={SIDECAR_UID}", f"--owner={app_uid}", "--sslmode=verify-full"]
        if dsql is not None:
            command.append("--dsql")
            environment = {"AURORA_SIDECAR_HOST": dsql.cluster.attr_endpoint, "AURORA_SIDECAR_USER": dsql.user}
            actions = ["dsql:DbConnectAdmin" if dsql.user == "admin" else "dsql:DbConnect"]
            if dsql.admin_set_up:
                if dsql.user == "admin":
                    raise ValueError("AuroraSidecar: admin_set_up creates the app's own role; the user is admin")
                command.append("--admin-iam-user=admin")
                environment["AURORA_SIDECAR_DSQL_GRANT_ARN"] = task_definition.task_role.role_arn
                actions.append("dsql:DbConnectAdmin")
            task_definition.add_to_task_role_policy(iam.PolicyStatement(
                actions=actions,
                resources=[dsql.cluster.attr_resource_arn],
            ))
        else:
            environment = {
                "AURORA_SIDECAR_HOST": cluster.cluster_endpoint.hostname,
                "AURORA_SIDECAR_PORT": Token.as_string(cluster.cluster_endpoint.port),
            }
        if database:
            environment["AURORA_SIDECAR_DATABASE"] = database
        if pgbouncer_image is not None:
            command.append("--pgbouncer")
        secrets = {}
        if admin_secret is not None:
            command.append("--admin-secret-env=DB_ADMIN_SECRET")
            secrets["DB_ADMIN_SECRET"] = ecs.Secret.from_secrets_manager(admin_secret)
        if iam_auth is not None:
            command.append("--iam-auth")
            environment["AURORA_SIDECAR_USER"] = iam_auth.user
            stack = Stack.of(self)
            task_definition.add_to_task_role_policy(iam.PolicyStatement(
                actions=["rds-db:connect"],
                resources=[stack.format_arn(
                    service="rds-db",
                    resource="dbuser",
                    resource_name=f"{cluster.cluster_resource_identifier}/{iam_auth.user}",
                    # arn:aws:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/USER
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )],
            ))
        elif dsql is not None:
            pass
        elif inject_secret:
            secrets["DB_SECRET"] = ecs.Secret.from_secrets_manager(secret)
        else:
            environment["AURORA_SIDECAR_SECRET_ID"] = secret.secret_arn
            secret.grant_read(task_definition.task_role)

        self.container = task_definition.add_container(
            SIDECAR,
            container_name=SIDECAR,
            image=image,
            # `run` stays up and re-renders on rotation; `once` exits 0 when ready.
            essential=mode == "run",
            user="0",
            command=command,
            environment=environment,
            secrets=secrets or None,
            health_check=ecs.HealthCheck(
                command=HEALTH_COMMAND,
                # Start period + interval x retries: five minutes, an Aurora resume from
                # 0 ACU (15-30 s) with room to spare, within ECS's limits.
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                retries=10,
                start_period=Duration.seconds(300),
            ),
            stop_timeout=Duration.seconds(10),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=SIDECAR, log_group=log_group),
        )
        self.container.add_mount_points(
            ecs.MountPoint(source_volume=SIDECAR, container_path=OUT_DIR, read_only=False))
        app_container.add_mount_points(
            ecs.MountPoint(source_volume=SIDECAR, container_path=OUT_DIR, read_only=True))
        condition = (ecs.ContainerDependencyCondition.HEALTHY if mode == "run"
                     else ecs.ContainerDependencyCondition.SUCCESS)
        app_container.add_container_dependencies(
            ecs.ContainerDependency(container=self.container, condition=condition))
        if pgbouncer_image is not None:
            self.pgbouncer = self._add_pgbouncer(task_definition, app_container, pgbouncer_image,
                                                 app_uid, log_group)
        for name, value in (("PGSERVICEFILE", f"{OUT_DIR}/pg_service.conf"),
                            ("PGPASSFILE", f"{OUT_DIR}/pgpass"), ("PGSERVICE", "app")):
            app_container.add_environment(name, value)

        if service_security_group is not None and cluster is not None:
            cluster.connections.allow_default_port_from(
                service_security_group, "aurora-sidecar: the service's tasks reach the cluster")

    def _add_pgbouncer(self, task_definition, app_container, image, app_uid, log_group):
        """PgBouncer reading the files the sidecar renders, started once they exist; the app
        starts after it."""
        pgbouncer = task_definition.add_container(
            "pgbouncer",
            container_name="pgbouncer",
            image=image,
            essential=True,
            # pgbouncer.users is 0600 and belongs to the app's uid (--owner).
            user=app_uid,
            entry_point=["pgbouncer"],
            command=[f"{OUT_DIR}/pgbouncer.ini"],
            stop_timeout=Duration.seconds(30),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="pgbouncer", log_group=log_group),
        )
        pgbouncer.add_mount_points(
            ecs.MountPoint(source_volume=SIDECAR, container_path=OUT_DIR, read_only=True))
        pgbouncer.add_container_dependencies(
            ecs.ContainerDependency(container=self.container, condition=ecs.ContainerDependencyCondition.HEALTHY))
        app_container.add_container_dependencies(
            ecs.ContainerDependency(container=pgbouncer, condition=ecs.ContainerDependencyCondition.START))
        return pgbouncer
