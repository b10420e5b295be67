"""Storage over local paths and over real HTTP to an S3-compatible server on 127.0.0.1."""

import pytest

from components.core.data import storage


def test_local_list_read_write(tmp_path):
    storage.write_bytes(str(tmp_path / "a" / "b.bin"), b"hello")
    storage.write_bytes(str(tmp_path / "c.bin"), b"x")
    infos = storage.list_objects(str(tmp_path))
    assert [i.relpath for i in infos] == ["a/b.bin", "c.bin"]
    assert storage.read_bytes(infos[0].uri) == b"hello"
    assert not list(tmp_path.rglob("*.partial"))


def test_s3_round_trip(s3_bucket):
    base = f"s3://{s3_bucket}/data"
    for i in range(30):
        storage.write_bytes(f"{base}/train/benign/{i:02d}.bin", bytes([i]) * (i + 1))
    infos = storage.list_objects(base)
    assert len(infos) == 30 and infos[0].relpath == "train/benign/00.bin"
    assert all(i.etag for i in infos)
    assert storage.read_bytes(f"{base}/train/benign/07.bin") == bytes([7]) * 8
    assert [storage.read_bytes(i.uri) for i in infos] == [bytes([i]) * (i + 1) for i in range(30)]


def test_fingerprint_changes_when_an_object_changes(s3_bucket):
    base = f"s3://{s3_bucket}/fp"
    storage.write_bytes(f"{base}/x.jpg", b"one")
    first = storage.fingerprint(storage.list_objects(base))
    assert storage.fingerprint(storage.list_objects(base)) == first
    storage.write_bytes(f"{base}/x.jpg", b"two")
    assert storage.fingerprint(storage.list_objects(base)) != first


def test_missing_bucket_names_the_uri(s3_endpoint):
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket-here/x.*bucket does not exist"):
        storage.list_objects("s3://no-such-bucket-here/x")


def test_missing_local_dir_names_the_path(tmp_path):
    with pytest.raises(storage.StorageError, match="nope: no such directory"):
        storage.list_objects(str(tmp_path / "nope"))


def test_unreachable_endpoint_is_a_clear_error(s3_endpoint, monkeypatch):
    from tests.support.processes import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage._s3_client.cache_clear()
    try:
        with pytest.raises(storage.StorageError, match="cannot reach the S3 endpoint"):
            storage.list_objects("s3://bucket/data")
    finally:
        storage._s3_client.cache_clear()
