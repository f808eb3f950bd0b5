"""The AWS roles cluster/cluster.yaml names, and the study's bucket: run once per account and
bucket, from a laptop with administrator credentials, before `ray up cluster/cluster.yaml`.

    python cluster/aws_iam.py --bucket my-bucket [--region us-west-2]

- gpo-study-worker (role and instance profile of the same name): read and write the bucket,
  nothing else. GPU workers write trial checkpoints and final results there.
- gpo-study-head: what Ray's head needs to run the cluster (AmazonEC2FullAccess, as Ray's own
  default role), the bucket (the driver writes the study table), and iam:PassRole on the
  workers' role alone: EC2 refuses to start an instance with a profile whose role the caller
  may not pass, and the head is the caller when its autoscaler adds a worker.
- the bucket, in the region, unless it exists.

Idempotent: what exists is kept, and the roles' inline policies are rewritten for the bucket
given (rerun it with another bucket to switch). Ray's cluster launcher creates its own default
role only for a head without an instance profile, and that role may not pass roles.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

HEAD, WORKER = "gpo-study-head", "gpo-study-worker"
EC2_TRUST = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
EC2_FULL_ACCESS = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"


def bucket_statements(bucket: str) -> list[dict]:
    """Read, write, list and delete in one bucket (Tune keeps one checkpoint per trial and
    deletes the older ones; pyarrow looks up the bucket's region and lists folders)."""
    return [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": f"arn:aws:s3:::{bucket}"},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"arn:aws:s3:::{bucket}/*"},
    ]


def ensure_role(iam, name: str, policy: dict, managed: tuple[str, ...] = ()) -> tuple[str, bool]:
    """The role `name` with an instance profile of the same name and `policy` inline: its ARN,
    and whether the profile is new."""
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
                              Description="gpo-study Ray cluster nodes (cluster/aws_iam.py)")["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    for policy_arn in managed:
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
    try:
        profile, new = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"], False
    except iam.exceptions.NoSuchEntityException:
        profile, new = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"], True
    if name not in {role["RoleName"] for role in profile["Roles"]}:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        new = True
    return arn, new


def ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except s3.exceptions.ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)


def setup(bucket: str, region: str, propagation_s: float = 15) -> dict:
    """Create or update the bucket and both roles; their names and ARNs. A new instance profile
    takes seconds to reach EC2 (Ray's launcher waits 15 s after making its own)."""
    import boto3

    session = boto3.session.Session(region_name=region)
    iam = session.client("iam")
    worker, new_worker = ensure_role(iam, WORKER, {"Version": "2012-10-17", "Statement": bucket_statements(bucket)})
    head_policy = {"Version": "2012-10-17",
                   "Statement": [*bucket_statements(bucket),
                                 {"Effect": "Allow", "Action": "iam:PassRole", "Resource": worker}]}
    head, new_head = ensure_role(iam, HEAD, head_policy, managed=(EC2_FULL_ACCESS,))
    ensure_bucket(session.client("s3"), bucket, region)
    if new_worker or new_head:
        time.sleep(propagation_s)
    return {"bucket": bucket, "region": region, HEAD: head, WORKER: worker}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", required=True, help="the study's bucket (storage=s3://BUCKET/...)")
    parser.add_argument("--region", default="us-west-2", help="provider.region of cluster/cluster.yaml")
    args = parser.parse_args(argv)
    done = setup(args.bucket, args.region)
    print(f"roles {HEAD} and {WORKER} ready, bucket s3://{args.bucket} in {args.region}; now: ray up cluster/cluster.yaml")
    print(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
