"""Putting a local folder into the tests' S3 server (tests/conftest.py, s3_endpoint)."""

from __future__ import annotations

from pathlib import Path


def upload_tree(local: Path, bucket: str, prefix: str) -> str:
    import boto3

    client = boto3.client("s3")
    for path in sorted(local.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
    return f"s3://{bucket}/{prefix}"
