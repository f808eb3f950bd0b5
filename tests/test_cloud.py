"""The cloud launch files run through Ray's own cloud code, offline.

AWS: moto's in-process mock (no network) answers EC2, IAM, STS and S3. cluster/aws_iam.py makes
the roles and bucket; Ray's bootstrap runs on cluster/cluster.yaml as `ray up` runs it; Ray's
AWS node provider launches the head as `ray up` does, and a GPU worker as the head's
autoscaler does: with the head role's credentials, under moto's IAM enforcement. The worker
role then writes the GPU study's storage; what EC2 and IAM check that moto does not (iam:PassRole
on RunInstances, s3:ListBucket for listing) is evaluated with moto's IAM policy engine.

GCP: Ray's bootstrap and node provider run on cluster/gcp.yaml against a scripted Compute
Engine / IAM / Resource Manager (their HTTP answers written here), which shows what Ray asks of
Google and what it would create, not that Google accepts it.

Every launch file is also checked against Ray's cluster schema; setup-node.sh's choices are
checked from its own functions."""

import copy
import importlib.util
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from gpo.tune.study import load_study

ROOT = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")


@pytest.mark.parametrize("name", ["cluster.yaml", "gcp.yaml", "local.yaml"])
def test_every_launch_file_matches_rays_schema(name):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        jsonschema.validate(dict(config, provider={"typo": "aws"}), schema)


def launch_head(provider, config: dict) -> None:
    """The head as `ray up` creates it (commands.get_or_create_head_node): the bootstrap's
    head-only `head_node` fields under the head type's node_config."""
    from ray.autoscaler.tags import NODE_KIND_HEAD, TAG_RAY_NODE_KIND, TAG_RAY_NODE_NAME, TAG_RAY_USER_NODE_TYPE

    head = copy.deepcopy(config["head_node"])
    head.update(config["available_node_types"]["head"]["node_config"])
    provider.create_node(head, {TAG_RAY_NODE_KIND: NODE_KIND_HEAD, TAG_RAY_USER_NODE_TYPE: "head",
                                TAG_RAY_NODE_NAME: f"ray-{config['cluster_name']}-head"}, 1)


def launch_worker(provider, config: dict) -> None:
    """One GPU worker as the head's autoscaler launches it: NodeLauncher, from the config `ray up`
    copies to the head (without the head-only fields)."""
    from ray.autoscaler._private.event_summarizer import EventSummarizer
    from ray.autoscaler._private.node_launcher import BaseNodeLauncher
    from ray.autoscaler._private.node_provider_availability_tracker import NodeProviderAvailabilityTracker
    from ray.autoscaler._private.util import ConcurrentCounter

    remote = copy.deepcopy(config)
    remote.pop("head_node")
    pending = ConcurrentCounter()
    pending.inc("gpu_worker", 1)
    launcher = BaseNodeLauncher(provider, pending, EventSummarizer(), NodeProviderAvailabilityTracker())
    assert launcher.launch_node(remote, 1, "gpu_worker"), "the worker was not launched"


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """Ray's bootstraps write the SSH key they make under ~/.ssh, and read cloud credentials
    from ~: a home of the test's own."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def aws(offline_home, monkeypatch):
    pytest.importorskip("moto")
    from moto import mock_aws
    from ray.autoscaler._private.aws.utils import client_cache, resource_cache

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-west-2",
                       "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}.items():  # AmazonEC2FullAccess, as on AWS
        monkeypatch.setenv(key, value)
    resource_cache.cache_clear()  # Ray keeps its boto3 clients for the process
    client_cache.cache_clear()
    with mock_aws():
        yield
    resource_cache.cache_clear()
    client_cache.cache_clear()


def aws_iam():
    spec = importlib.util.spec_from_file_location("aws_iam", ROOT / "cluster" / "aws_iam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def role_allows(iam, role: str, action: str, resource: str) -> bool:
    """IAM's verdict on `action` by `role` (its inline and attached policies), from moto's policy engine."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    documents = [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                 for name in iam.list_role_policies(RoleName=role)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"])
    verdicts = [IAMPolicy(json.dumps(d) if isinstance(d, dict) else d).is_action_permitted(action, resource) for d in documents]
    return PermissionResult.DENIED not in verdicts and PermissionResult.PERMITTED in verdicts


def test_ray_up_on_aws_launches_current_gpu_images_whose_workers_write_the_study_bucket(aws):
    import boto3
    from moto.core.authorization import enable_iam_authentication
    from ray.autoscaler._private.commands import _bootstrap_config
    from ray.autoscaler._private.providers import _get_node_provider

    study = load_study("tune/studies/opinionqa-gpu.yaml", ["storage=s3://gpo-study-test/gpo-sweeps"])
    bucket, prefix = str(study.root).removeprefix("s3://").split("/", 1)
    made = aws_iam().setup(bucket, "us-west-2", propagation_s=0)
    config = _bootstrap_config(yaml.safe_load((ROOT / "cluster" / "cluster.yaml").read_text()), no_config_cache=True)
    types = config["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] == 1 and types["gpu_worker"]["resources"]["CPU"] == 8  # from EC2's data
    assert config["head_node"] == {}  # the head's profile comes from the file, not from Ray's default role

    iam, sts = boto3.client("iam"), boto3.client("sts")
    # EC2 refuses RunInstances with an instance profile whose role the caller may not pass;
    # moto does not check it, so the head's launches are checked here with IAM's own rules
    worker_role = made["gpo-study-worker"]
    passed = []

    def pass_role(params, **_):
        with disabled_iam_authentication():  # the test's own look-ups
            profile = iam.get_instance_profile(InstanceProfileName=params["IamInstanceProfile"]["Name"])["InstanceProfile"]
            [role] = profile["Roles"]
            assert role_allows(iam, "gpo-study-head", "iam:PassRole", role["Arn"]), f"the head may not pass {role['Arn']}"
        passed.append(role["Arn"])

    def credentials(role: str) -> dict:
        c = sts.assume_role(RoleArn=made[role], RoleSessionName="node")["Credentials"]
        return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                "aws_session_token": c["SessionToken"]}

    laptop = _get_node_provider(config["provider"], config["cluster_name"], use_cache=False)
    head = _get_node_provider({**config["provider"], "aws_credentials": credentials("gpo-study-head")}, config["cluster_name"],
                              use_cache=False)
    head.ec2_fail_fast.meta.client.meta.events.register("before-parameter-build.ec2.RunInstances", pass_role)
    worker = credentials("gpo-study-worker")
    launch_head(laptop, config)  # with the laptop's (administrator's) credentials
    with enable_iam_authentication():  # from here on every request needs a principal IAM allows
        launch_worker(head, config)
        s3 = boto3.client("s3", **worker)
        key = f"{prefix}/search/probe.txt"
        s3.put_object(Bucket=bucket, Key=key, Body=b"checkpoint")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"checkpoint"
        s3.delete_object(Bucket=bucket, Key=key)
        with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):  # the bucket, nothing else
            s3.put_object(Bucket="someone-elses-bucket", Key=key, Body=b"x")
    assert passed == [worker_role]

    ec2 = boto3.client("ec2")
    nodes = {tag_value(i, "ray-user-node-type"): i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert set(nodes) == {"head", "gpu_worker"}
    assert nodes["head"]["InstanceType"] == "m5.2xlarge" and nodes["gpu_worker"]["InstanceType"] == "g5.2xlarge"
    # EC2 resolves these public parameters at launch, in any region; Ray passes them through
    # (without an ImageId it would launch its Ubuntu 18.04 / CUDA 11 default)
    assert nodes["head"]["ImageId"] == "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    assert nodes["gpu_worker"]["ImageId"] == \
        "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    assert nodes["head"]["IamInstanceProfile"]["Arn"].endswith("instance-profile/gpo-study-head")
    assert nodes["gpu_worker"]["IamInstanceProfile"]["Arn"].endswith("instance-profile/gpo-study-worker")
    for kind, size in (("head", 100), ("gpu_worker", 200)):
        [disk] = nodes[kind]["BlockDeviceMappings"]
        volume = ec2.describe_volumes(VolumeIds=[disk["Ebs"]["VolumeId"]])["Volumes"][0]
        assert (disk["DeviceName"], volume["Size"], volume["VolumeType"]) == ("/dev/sda1", size, "gp3")
    # what moto names otherwise: listing is IAM's s3:ListBucket; the head lists and writes the
    # bucket too (the study table), and Ray's default head role could not pass the workers' role
    assert role_allows(iam, "gpo-study-worker", "s3:ListBucket", f"arn:aws:s3:::{bucket}")
    assert role_allows(iam, "gpo-study-head", "s3:PutObject", f"arn:aws:s3:::{bucket}/{prefix}/study.parquet")
    assert not role_allows(iam, "gpo-study-worker", "iam:PassRole", worker_role)
    iam.create_role(RoleName="ray-default-like", AssumeRolePolicyDocument="{}")
    iam.attach_role_policy(RoleName="ray-default-like", PolicyArn="arn:aws:iam::aws:policy/AmazonEC2FullAccess")
    assert not role_allows(iam, "ray-default-like", "iam:PassRole", worker_role)


def disabled_iam_authentication():
    from moto.core.authorization import disable_iam_authentication

    return disable_iam_authentication()


def tag_value(instance: dict, key: str) -> str:
    return next(t["Value"] for t in instance.get("Tags", []) if t["Key"] == key)


def test_aws_iam_is_idempotent_and_follows_the_bucket(aws):
    import boto3

    module = aws_iam()
    module.setup("first-bucket", "us-west-2", propagation_s=0)
    module.setup("second-bucket", "us-west-2", propagation_s=0)  # a rerun: nothing duplicated, the policies follow
    iam = boto3.client("iam")
    for name in ("gpo-study-head", "gpo-study-worker"):
        assert [r["RoleName"] for r in iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]] == [name]
    assert role_allows(iam, "gpo-study-worker", "s3:PutObject", "arn:aws:s3:::second-bucket/x")
    assert not role_allows(iam, "gpo-study-worker", "s3:PutObject", "arn:aws:s3:::first-bucket/x")
    assert {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]} == {"first-bucket", "second-bucket"}


class ScriptedGCP:
    """Google's APIs as Ray's GCP code calls them, answered from here: the project, the
    service account Ray makes, the project's IAM policy, its SSH keys, the default subnet, and
    instance inserts (kept, with their request bodies)."""

    def __init__(self, project: str):
        self.project, self.account, self.inserted = project, None, []
        self.policy = {"bindings": [], "etag": "e0"}

    def request(self, uri, method="GET", body=None, headers=None, **_):
        import httplib2

        path, data, p = urlparse(uri).path, json.loads(body) if body else None, self.project

        def answer(obj, status=200):
            return httplib2.Response({"status": status, "content-type": "application/json"}), json.dumps(obj).encode()

        if path == f"/v1/projects/{p}":
            return answer({"projectId": p, "lifecycleState": "ACTIVE"})
        if "/serviceAccounts/" in path and method == "GET":
            return answer(self.account) if self.account else answer({"error": {"code": 404}}, 404)
        if path.endswith("/serviceAccounts") and method == "POST":
            self.account = {"email": f"{data['accountId']}@{p}.iam.gserviceaccount.com", "projectId": p}
            return answer(self.account)
        if path.endswith(":getIamPolicy"):
            return answer(self.policy)
        if path.endswith(":setIamPolicy"):
            self.policy = data["policy"]
            return answer(self.policy)
        if path == f"/compute/v1/projects/{p}":
            return answer({"name": p, "commonInstanceMetadata": {"items": [], "fingerprint": "f0"}})
        if path.endswith("/setCommonInstanceMetadata"):
            return answer({"name": "op-keys", "status": "RUNNING"})
        if "/operations/" in path:
            return answer({"name": path.rsplit("/", 1)[1], "status": "DONE"})
        if path.endswith("/subnetworks"):
            return answer({"items": [{"selfLink": f"https://www.googleapis.com/compute/v1/projects/{p}/regions/"
                                                  "us-central1/subnetworks/default"}]})
        if path.endswith("/instances") and method == "POST":
            self.inserted.append(data)
            return answer({"name": "op-insert", "status": "RUNNING"})
        raise AssertionError(f"Ray asked Google for something this test does not script: {method} {uri}")


def test_ray_up_on_gcp_gives_the_gpu_workers_the_service_account_that_writes_the_bucket(offline_home, monkeypatch):
    pytest.importorskip("googleapiclient")
    import httplib2
    from ray.autoscaler._private.commands import _bootstrap_config
    from ray.autoscaler._private.providers import _get_node_provider

    project = "gpo-test-project"
    google = ScriptedGCP(project)
    monkeypatch.setattr(httplib2.Http, "request", google.request)  # every request Ray's Google clients make
    config = yaml.safe_load((ROOT / "cluster" / "gcp.yaml").read_text().replace("MY-PROJECT", project))  # the README's edit
    # a static token stands in for `gcloud auth application-default login`
    config["provider"]["gcp_credentials"] = {"type": "credentials_token", "credentials": "offline"}
    config = _bootstrap_config(config, no_config_cache=True)
    provider = _get_node_provider(config["provider"], config["cluster_name"], use_cache=False)
    launch_head(provider, config)
    launch_worker(provider, config)

    account = f"ray-autoscaler-sa-v1@{project}.iam.gserviceaccount.com"
    roles = {b["role"] for b in google.policy["bindings"] if f"serviceAccount:{account}" in b["members"]}
    assert {"roles/storage.objectAdmin", "roles/iam.serviceAccountUser", "roles/compute.admin"} <= roles
    head, worker = google.inserted
    assert head["machineType"].endswith("/n2-standard-8") and worker["machineType"].endswith("/g2-standard-8")
    assert head["disks"][0]["initializeParams"]["sourceImage"].endswith("family/ubuntu-2204-lts")
    assert re.search(r"family/common-cu\d+-ubuntu-2204-nvidia-\d+$", worker["disks"][0]["initializeParams"]["sourceImage"])
    assert worker["scheduling"]["onHostMaintenance"] == "TERMINATE"  # GPU VMs cannot live-migrate
    # both run as the account Ray made: it writes the study's bucket, and lets the head start workers with it
    assert [a["email"] for a in head["serviceAccounts"]] == [a["email"] for a in worker["serviceAccounts"]] == [account]
    study = load_study("tune/studies/opinionqa-gpu.yaml", [f"storage=gs://{project}-sweeps/gpo-sweeps"])
    study.check_storage(multi_node=True)


def sourced(function: str, *args: str, path: str = "") -> str:
    """Output of a function of cluster/setup-node.sh, sourced (which runs nothing of it)."""
    script = f'source "{ROOT}/cluster/setup-node.sh"; {function} "$@"'
    env = {"PATH": f"{path}:/usr/bin:/bin" if path else "/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", script, "bash", *args], capture_output=True, text=True, env=env, check=True).stdout


def test_setup_node_picks_the_torch_build_the_driver_supports(tmp_path):
    (tmp_path / "nvidia-smi").write_text(  # the header of nvidia-smi 570 on an A10G
        "#!/bin/sh\necho '| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |'\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    assert sourced("driver_cuda", path=str(tmp_path)).strip() == "12.8"
    assert sourced("driver_cuda").strip() == ""  # no driver: the CPU build
    assert sourced("torch_indexes", "12.8").split() == [f"https://download.pytorch.org/whl/cu{v}" for v in (128, 126, 124, 121, 118)]
    assert sourced("torch_indexes", "13.2").split()[0] == "https://download.pytorch.org/whl/cu130"
    assert sourced("torch_indexes", "11.4").split() == []  # too old for any: setup stops and says so


def test_setup_node_makes_the_venv_with_uv_when_the_system_python_is_too_old(tmp_path):
    (tmp_path / "python3").write_text("#!/bin/sh\nexit 1\n")  # fails the >= 3.10 check, as a 3.6 does
    (tmp_path / "uv").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/uv-args\n')
    for stub in ("python3", "uv"):
        (tmp_path / stub).chmod(0o755)
    sourced("make_venv", str(tmp_path / "venv"), path=str(tmp_path))
    assert (tmp_path / "uv-args").read_text().split() == ["venv", "--seed", "--python", "3.11", str(tmp_path / "venv")]
