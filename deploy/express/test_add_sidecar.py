"""The Express Mode recipe's transformation: the task definition of an Express service
(as DescribeTaskDefinition returns it, with ECS's defaults filled in), with the sidecar
added, must be valid RegisterTaskDefinition input (botocore's ECS model), pass the ECS
rules of scripts/check_deploy.py, and stay the same when the recipe runs again.

Run by scripts/validate-deploy: python -m unittest discover -s deploy/express
"""
import contextlib
import copy
import io
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))

import check_deploy  # noqa: E402
from add_sidecar import add_sidecar, covers, parse  # noqa: E402

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:my-app/db-AbCdEf"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aurora-sidecar:0.1.0"

# What DescribeTaskDefinition says about an Express Mode service's task definition: one
# primary container, read-only fields, and the defaults ECS fills in.
EXPRESS = {
    "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/default-my-app:3",
    "family": "default-my-app",
    "revision": 3,
    "status": "ACTIVE",
    "taskRoleArn": "arn:aws:iam::123456789012:role/my-app-task",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "compatibilities": ["EC2", "FARGATE"],
    "cpu": "1024",
    "memory": "2048",
    "volumes": [],
    "placementConstraints": [],
    "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
    "registeredAt": "2026-11-30T10:00:00.000Z",
    "registeredBy": "arn:aws:sts::123456789012:assumed-role/ecs-express/abc",
    "containerDefinitions": [{
        "name": "Main",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-app:latest",
        "cpu": 0,
        "essential": True,
        "portMappings": [{"containerPort": 4000, "hostPort": 4000, "protocol": "tcp"}],
        "environment": [{"name": "PORT", "value": "4000"}],
        "mountPoints": [],
        "volumesFrom": [],
        "systemControls": [],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/aws/ecs/default/my-app", "awslogs-region": "eu-west-1",
            "awslogs-stream-prefix": "ecs"}},
    }],
}


def opts(*extra):
    return parse(["--cluster", "default", "--service", "my-app", "--image", IMAGE, *extra])


def registered(td):
    """What ECS would describe after registering `td`: defaults filled into the
    containers, read-only fields back."""
    out = copy.deepcopy(td)
    for c in out["containerDefinitions"]:
        for key, default in (("cpu", 0), ("volumesFrom", []), ("systemControls", []), ("portMappings", [])):
            c.setdefault(key, default)
    out.update({k: EXPRESS[k] for k in ("taskDefinitionArn", "status", "requiresAttributes", "compatibilities",
                                        "registeredAt", "registeredBy")})
    out["revision"] = 4
    return out


class AddSidecar(unittest.TestCase):
    def test_the_result_is_valid_input_and_passes_the_ecs_rules(self):
        for extra in (["--secret-arn", SECRET],
                      ["--secret-arn", SECRET, "--mode", "once"],
                      ["--iam-auth", "--host", "db.cluster-x.eu-west-1.rds.amazonaws.com", "--user", "app"]):
            with self.subTest(extra=extra):
                td = add_sidecar(EXPRESS, opts(*extra))
                self.assertEqual(check_deploy.task_definition_failures(td, "express"), [])

    def test_the_sidecar_the_volume_and_the_primary_containers_dependency(self):
        td = add_sidecar(EXPRESS, opts("--secret-arn", SECRET))
        self.assertNotIn("taskDefinitionArn", td)
        main, sidecar = td["containerDefinitions"]
        self.assertEqual((main["name"], sidecar["name"]), ("Main", "aurora-sidecar"))
        self.assertEqual(td["volumes"], [{"name": "aurora-sidecar"}])
        self.assertEqual(main["mountPoints"], [{"sourceVolume": "aurora-sidecar",
                                                "containerPath": "/run/aurora-sidecar", "readOnly": True}])
        self.assertEqual(main["dependsOn"], [{"containerName": "aurora-sidecar", "condition": "HEALTHY"}])
        self.assertIn({"name": "PGSERVICEFILE", "value": "/run/aurora-sidecar/pg_service.conf"},
                      main["environment"])
        self.assertIn({"name": "PORT", "value": "4000"}, main["environment"])
        self.assertEqual(sidecar["secrets"], [{"name": "DB_SECRET", "valueFrom": SECRET}])
        self.assertNotIn("secrets", main)
        self.assertEqual(sidecar["logConfiguration"]["options"]["awslogs-stream-prefix"], "aurora-sidecar")
        self.assertEqual(EXPRESS["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-stream-prefix"],
                         "ecs", "the input is not modified")

    def test_a_graviton_service_keeps_its_architecture(self):
        # The sidecar runs on whatever the service runs on (the image has both platforms):
        # the recipe leaves runtimePlatform as it found it.
        graviton = {**EXPRESS, "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}}
        td = add_sidecar(graviton, opts("--secret-arn", SECRET))
        self.assertEqual(td["runtimePlatform"], graviton["runtimePlatform"])
        self.assertEqual(check_deploy.task_definition_failures(td, "express on ARM64"), [])

    def test_running_it_again_changes_nothing(self):
        o = opts("--secret-arn", SECRET)
        once = add_sidecar(EXPRESS, o)
        after_register = registered(once)
        self.assertEqual(add_sidecar(after_register, o), once, "the same input for RegisterTaskDefinition")
        self.assertTrue(covers(after_register, add_sidecar(after_register, o)))
        # Asked for something else (once instead of run): a change, not a no-op.
        self.assertFalse(covers(after_register, add_sidecar(after_register, opts("--secret-arn", SECRET,
                                                                                   "--mode", "once"))))
        self.assertFalse(covers(EXPRESS, once), "the first run does change the Express task definition")

    def test_refusals(self):
        two = copy.deepcopy(EXPRESS)
        two["containerDefinitions"].append(dict(two["containerDefinitions"][0], name="Other"))
        with self.assertRaises(SystemExit):
            add_sidecar(two, opts("--secret-arn", SECRET))
        no_role = {k: v for k, v in EXPRESS.items() if k != "taskRoleArn"}
        with self.assertRaises(SystemExit):
            add_sidecar(no_role, opts("--iam-auth", "--host", "h", "--user", "app"))
        with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            opts()  # neither --secret-arn nor --iam-auth


if __name__ == "__main__":
    unittest.main()
