"""A PEP 517 build backend for this package, in the standard library only.

pyproject.toml names it with `backend-path = ["_build"]` and `requires = []`,
so that `pip install ./libagent/python` builds the wheel without downloading
anything (pip's build isolation would otherwise fetch setuptools). It builds
a pure-Python wheel (PEP 427) and an sdist, and supports editable installs
(PEP 660, a .pth file). The metadata comes from pyproject.toml's [project]
table; the modules shipped are the ones listed in MODULES and PACKAGES.
"""

import base64
import csv
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ["agentlog.py"]
PACKAGES = ["log_collector"]
SDIST_EXTRA = ["pyproject.toml", "README.md", "_build/agentlog_build.py"]
WHEEL_TAG = "py3-none-any"


# ---- pyproject.toml's [project] table -------------------------------------------

def _toml_string(s):
    s = s.strip()
    if s[:1] == '"' and s[-1:] == '"':
        return s[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    if s[:1] == "'" and s[-1:] == "'":
        return s[1:-1]
    raise ValueError("not a TOML string: %r" % s)


def project():
    """The [project] table: tomllib when there is one (3.11+), else a reader
    of the subset this file uses (strings and arrays of strings)."""
    path = os.path.join(ROOT, "pyproject.toml")
    try:
        import tomllib
    except ImportError:
        tomllib = None
    if tomllib is not None:
        with open(path, "rb") as f:
            return tomllib.load(f)["project"]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    section = None
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([^\]]+)\]$", line)
        if m:
            section = m.group(1).strip()
            continue
        if section != "project":
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value.startswith("["):
            while not value.rstrip().endswith("]"):
                value += " " + next(lines).strip()
            items = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', value)
            out[key] = [_toml_string(i) for i in items]
        else:
            out[key] = _toml_string(value)
    return out


def _dist_name(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata():
    p = project()
    lines = ["Metadata-Version: 2.1", "Name: %s" % p["name"], "Version: %s" % p["version"]]
    if p.get("description"):
        lines.append("Summary: %s" % p["description"])
    if p.get("requires-python"):
        lines.append("Requires-Python: %s" % p["requires-python"])
    for c in p.get("classifiers", []):
        lines.append("Classifier: %s" % c)
    body = ""
    readme = p.get("readme")
    if isinstance(readme, str):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
    return p, ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def _files():
    """(archive name, path on disk) of every module shipped."""
    out = []
    for m in MODULES:
        out.append((m, os.path.join(ROOT, m)))
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith(".py"):
                    full = os.path.join(dirpath, fn)
                    out.append((os.path.relpath(full, ROOT).replace(os.sep, "/"), full))
    return out


# ---- wheels -------------------------------------------------------------------

class _Wheel:
    def __init__(self, path):
        self.zf = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.records = []

    def add(self, name, data):
        # a fixed date: the same sources give the same wheel
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zf.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append((name, "sha256=" + digest, str(len(data))))

    def close(self, record_name):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in self.records:
            w.writerow(r)
        w.writerow((record_name, "", ""))
        info = zipfile.ZipInfo(record_name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self.zf.writestr(info, buf.getvalue().encode())
        self.zf.close()


def _dist_info(wheel, p, metadata):
    di = "%s-%s.dist-info" % (_dist_name(p["name"]), p["version"])
    wheel.add(di + "/METADATA", metadata)
    wheel.add(di + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: agentlog_build\nRoot-Is-Purelib: true\n"
                              "Tag: %s\n" % WHEEL_TAG).encode())
    top = sorted({n.split("/")[0].rsplit(".py", 1)[0] for n, _ in _files()})
    wheel.add(di + "/top_level.txt", ("\n".join(top) + "\n").encode())
    return di


def _wheel_name(p):
    return "%s-%s-%s.whl" % (_dist_name(p["name"]), p["version"], WHEEL_TAG)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p, metadata = _metadata()
    name = _wheel_name(p)
    wheel = _Wheel(os.path.join(wheel_directory, name))
    for arcname, path in _files():
        with open(path, "rb") as f:
            wheel.add(arcname, f.read())
    di = _dist_info(wheel, p, metadata)
    wheel.close(di + "/RECORD")
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a wheel holding a .pth file that puts this directory on sys.path."""
    p, metadata = _metadata()
    name = _wheel_name(p)
    wheel = _Wheel(os.path.join(wheel_directory, name))
    wheel.add("__editable__.%s.pth" % _dist_name(p["name"]), (ROOT + "\n").encode())
    di = _dist_info(wheel, p, metadata)
    wheel.close(di + "/RECORD")
    return name


def _prepare_metadata(metadata_directory):
    p, metadata = _metadata()
    di = "%s-%s.dist-info" % (_dist_name(p["name"]), p["version"])
    os.makedirs(os.path.join(metadata_directory, di), exist_ok=True)
    with open(os.path.join(metadata_directory, di, "METADATA"), "wb") as f:
        f.write(metadata)
    with open(os.path.join(metadata_directory, di, "WHEEL"), "w") as f:
        f.write("Wheel-Version: 1.0\nGenerator: agentlog_build\nRoot-Is-Purelib: true\nTag: %s\n" % WHEEL_TAG)
    return di


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _prepare_metadata(metadata_directory)


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


# ---- sdist ----------------------------------------------------------------------

def build_sdist(sdist_directory, config_settings=None):
    p, metadata = _metadata()
    base = "%s-%s" % (_dist_name(p["name"]), p["version"])
    name = base + ".tar.gz"
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))

    def add(tf, arcname, data):
        info = tarfile.TarInfo("%s/%s" % (base, arcname))
        info.size = len(data)
        info.mtime = mtime
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for arcname, path in _files() + [(x, os.path.join(ROOT, x)) for x in SDIST_EXTRA]:
            with open(path, "rb") as f:
                add(tf, arcname, f.read())
        add(tf, "PKG-INFO", metadata)
    return name
