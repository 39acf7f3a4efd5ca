import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

from lpl.data import cifar10
from lpl.validation import LPLError


def test_loads_the_standard_pickles(cifar_dir):
    train = cifar10.load_cifar10(cifar_dir, train=True, download=False)
    test = cifar10.load_cifar10(cifar_dir / "cifar-10-batches-py", train=False, download=False)
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (50, 3, 32, 32) and test.labels.dtype == torch.int64
    assert train.classes[0] == "airplane" and int(train.labels.max()) == 9


def test_data_dir_from_environment(cifar_dir, monkeypatch):
    monkeypatch.setenv("LPL_DATA_DIR", str(cifar_dir))
    assert len(cifar10.load_cifar10(None, train=False, download=False)) == 50


def test_missing_folder_says_where_to_put_the_files(tmp_path):
    with pytest.raises(LPLError, match="put the extracted 'cifar-10-batches-py' folder there"):
        cifar10.load_cifar10(tmp_path / "nowhere", download=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "not_a_dict", "foreign_object"])
def test_corrupt_files_give_clear_errors(cifar_dir, damage):
    path = cifar_dir / "cifar-10-batches-py" / "test_batch"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a pickle at all" * 10)
    elif damage == "wrong_shape":
        path.write_bytes(pickle.dumps({b"data": torch.zeros(3, 5).numpy().astype("uint8"), b"labels": [0, 1, 2]}))
    elif damage == "not_a_dict":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    else:
        path.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(LPLError, match=str(path.name)):
        cifar10.load_cifar10(cifar_dir, train=False, download=False)


def _archive(cifar_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(cifar_dir / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buffer.getvalue()


def test_download_checks_md5_and_extracts(cifar_dir, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(_archive(cifar_dir))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    target = tmp_path / "fresh"
    folder = cifar10.download_cifar10(target, url=archive.as_uri(), md5=md5)
    assert (folder / "test_batch").is_file()
    assert len(cifar10.load_cifar10(target, train=False, download=False)) == 50


def test_download_rejects_bad_md5_and_leaves_nothing(cifar_dir, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(_archive(cifar_dir))
    target = tmp_path / "fresh"
    with pytest.raises(LPLError, match="md5"):
        cifar10.download_cifar10(target, url=archive.as_uri(), md5="0" * 32)
    assert list(target.iterdir()) == []


def test_failed_download_tells_what_to_do(tmp_path):
    with pytest.raises(LPLError, match="could not be downloaded.*--data-dir"):
        cifar10.download_cifar10(tmp_path / "d", url=(tmp_path / "missing.tar.gz").as_uri())
