"""The in-tree build backend (_build/agentlog_build.py): `pip install
./libagent/python` builds with it, offline."""

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(PKG, "_build"))
import agentlog_build  # noqa: E402


def test_wheel_holds_the_modules_and_a_valid_record(tmp_path):
    name = agentlog_build.build_wheel(str(tmp_path))
    assert name == "agentlog-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / name) as z:
        names = set(z.namelist())
        assert {"agentlog.py", "log_collector/__init__.py", "log_collector/async_client.py"} <= names
        assert not any(n.startswith(("tests/", "_build/")) or n == "bench.py" for n in names)
        meta = z.read("agentlog-1.0.0.dist-info/METADATA").decode()
        assert "Name: agentlog\n" in meta and "Requires-Python: >=3.8\n" in meta
        rows = list(csv.reader(io.StringIO(z.read("agentlog-1.0.0.dist-info/RECORD").decode())))
        assert {r[0] for r in rows} == names
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                continue
            data = z.read(path)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (want, len(data)), path
        with open(os.path.join(PKG, "agentlog.py"), "rb") as f:
            assert z.read("agentlog.py") == f.read()


def test_sdist_and_editable(tmp_path):
    sd = agentlog_build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / sd) as t:
        names = set(t.getnames())
    assert {"agentlog-1.0.0/pyproject.toml", "agentlog-1.0.0/_build/agentlog_build.py",
            "agentlog-1.0.0/agentlog.py", "agentlog-1.0.0/PKG-INFO"} <= names
    (tmp_path / "e").mkdir()
    ed = agentlog_build.build_editable(str(tmp_path / "e"))
    with zipfile.ZipFile(tmp_path / "e" / ed) as z:
        assert z.read("__editable__.agentlog.pth").decode().strip() == PKG


def test_pyproject_reader_without_tomllib_agrees_with_tomllib():
    tomllib = pytest.importorskip("tomllib")
    code = ("import sys; sys.modules['tomllib'] = None; sys.path.insert(0, %r); "
            "import agentlog_build; print(repr(sorted(agentlog_build.project().items())))"
            % os.path.join(PKG, "_build"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(PKG, "pyproject.toml"), "rb") as f:
        assert out.strip() == repr(sorted(tomllib.load(f)["project"].items()))
