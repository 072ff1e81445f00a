"""The RPM (contrib/rpm) builds with Debian's rpmbuild, holds what the spec promises, and
its self-contained virtual environment runs sbpsctl once unpacked.

The build fetches wheels of the pinned runtime dependencies (constraints.txt) through pip,
from its cache or index; installing the RPM needs no network. The venv is made for
/usr/lib/sbps: its scripts start with ``#!/usr/lib/sbps/bin/python``, which does not exist
on this machine, so the unpacked copy is run with its own interpreter (``bin/python``, a
symlink to the build Python, finds the venv through the ``pyvenv.cfg`` next to it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import rpm_root

ROOT = Path(__file__).resolve().parents[2]
VENV = "usr/lib/sbps"


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the RPM, the rpmbuild top directory)."""
    for tool in ("rpmbuild", "rpm2cpio", "cpio"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages rpm, cpio)")
    top = tmp_path_factory.mktemp("rpmbuild")
    before = sorted(p.name for p in ROOT.iterdir())
    result = run("bash", ROOT / "contrib/rpm/build.sh", "--python", sys.executable,
                 "--topdir", top, timeout=280)
    assert result.returncode == 0, result.stderr[-4000:]
    rpm = Path(result.stdout.strip().splitlines()[-1])
    assert rpm.is_file() and rpm.parent.parent.parent == top
    # built from a copy: nothing (build/, *.egg-info) appears in the checkout
    assert sorted(p.name for p in ROOT.iterdir()) == before
    return rpm, top


@pytest.fixture(scope="module")
def unpacked(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rpmroot")
    cpio = subprocess.run(f"rpm2cpio '{built[0]}' | cpio -idm --quiet", shell=True,
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert cpio.returncode == 0, cpio.stderr
    return root


def query(rpm: Path, *args: str) -> list[str]:
    result = run("rpm", "-qp", *args, rpm)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_package_metadata(built: tuple[Path, Path]) -> None:
    rpm, _ = built
    info = run("rpm", "-qip", rpm).stdout
    version = next(line.split('"')[1] for line in (ROOT / "sbps/__init__.py").read_text()
                   .splitlines() if line.startswith("__version__"))
    assert "Name        : sbps\n" in info and f"Version     : {version}\n" in info
    assert "License     : MIT" in info
    requires = query(rpm, "--requires")
    assert sys.executable in requires and "systemd" in requires  # the interpreter it was built for
    # nothing generated from the bundled libraries (AutoReqProv: no)
    assert not [r for r in requires if r.startswith(("lib", "python3dist", "python(abi"))]
    assert "sbps-marshal" in query(rpm, "--obsoletes")
    assert "sbps-marshal" in query(rpm, "--conflicts")
    assert f"sbps-marshal = 2.{version}" in query(rpm, "--provides")
    scripts = "\n".join(query(rpm, "--scripts"))
    assert "daemon-reload" in scripts and "try-restart sbps-marshal.service" in scripts


def test_package_files(built: tuple[Path, Path]) -> None:
    rpm, _ = built
    files = set(query(rpm, "-l"))
    for path in ("/usr/bin/sbpsctl", "/usr/bin/sbps-marshal",
                 "/usr/lib/sbps/bin/python", "/usr/lib/sbps/bin/sbpsctl",
                 "/usr/lib/sbps/bin/sbps-marshal", "/usr/lib/sbps/pyvenv.cfg",
                 "/usr/lib/systemd/system/sbps-marshal.service",
                 "/usr/lib/systemd/system/tgt.service.d/sbps.conf",
                 "/usr/lib/systemd/system/tgtd.service.d/sbps.conf",
                 "/etc/sbps/marshal.toml", "/etc/sysconfig/sbps-marshal",
                 "/var/lib/sbps", "/var/lib/sbps/cache", "/var/lib/sbps/state"):
        assert path in files, path
    site = f"/usr/lib/sbps/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    for dist in ("sbps", "aiohttp", "boto3", "botocore", "dns", "prometheus_client",
                 "rtslib_fb", "pyudev"):
        assert f"{site}/{dist}" in files, dist
    # a clean venv: no installer left behind, no build-id links, no debug sources
    assert not any(f.startswith((f"{site}/pip", "/usr/lib/.build-id", "/usr/src"))
                   for f in files)
    assert set(query(rpm, "--configfiles")) == {"/etc/sbps/marshal.toml",
                                                 "/etc/sysconfig/sbps-marshal"}
    modes = dict(line.split(" ", 1)[::-1] for line in query(
        rpm, "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]"))
    assert modes["/var/lib/sbps/state"] == "drwx------"
    assert modes["/etc/sbps/marshal.toml"] == "-rw-------"


def vercmp(a: str, b: str) -> int:
    out = run("rpm", "--eval", f"%{{lua: print(rpm.vercmp('{a}', '{b}'))}}")
    return int(out.stdout.strip())


def test_satisfies_the_site_play(built: tuple[Path, Path]) -> None:
    """The personalization play asks zypper for ``sbps-marshal >= 0.0.8``, state=latest:
    the installed sbps must provide that, above every release of the field agent, so
    zypper neither fails nor swaps packages."""
    rpm, _ = built
    (provided,) = [p for p in query(rpm, "--provides") if p.startswith("sbps-marshal ")]
    version = provided.split(" = ")[1]
    assert vercmp(version, "0.0.8") == 1
    for field in ("0.0.8", "0.0.14", "1.0.0", "1.0.3", "1.9.99"):  # tags: v0.0.x, v1.0.x
        assert vercmp(version, field) == 1, field
    assert vercmp("0.1.0", "0.0.8") == 1 and vercmp("0.1.0", "1.0.3") == -1  # why 2.x


def test_unpacked_files_are_the_sources(unpacked: Path) -> None:
    assert (unpacked / "etc/sbps/marshal.toml").read_text() == \
        (ROOT / "contrib/rpm/marshal.toml").read_text()
    doc = next(unpacked.glob("usr/share/doc/*/marshal.example.toml"))
    assert doc.read_text() == (ROOT / "contrib/marshal.example.toml").read_text()
    assert (unpacked / "etc/sysconfig/sbps-marshal").read_text() == \
        (ROOT / "contrib/rpm/sbps-marshal.sysconfig").read_text()
    unit = "usr/lib/systemd/system/sbps-marshal.service"
    assert (unpacked / unit).read_text() == (ROOT / "systemd/sbps-marshal.service").read_text()
    assert os.readlink(unpacked / "usr/bin/sbpsctl") == "/usr/lib/sbps/bin/sbpsctl"
    assert os.readlink(unpacked / "usr/bin/sbps-marshal") == "/usr/lib/sbps/bin/sbps-marshal"


def test_venv_is_made_for_usr_lib_sbps(unpacked: Path, built: tuple[Path, Path]) -> None:
    """The build root never leaks into the venv: scripts, pyvenv.cfg and compiled files
    name /usr/lib/sbps."""
    venv = unpacked / VENV
    for script in ("sbpsctl", "sbps-marshal"):
        first = (venv / "bin" / script).read_text().splitlines()[0]
        assert first == "#!/usr/lib/sbps/bin/python", first
    leaked = run("grep", "-rlaF", str(built[1]), venv)
    assert leaked.stdout == "", leaked.stdout
    assert "/usr/lib/sbps" in (venv / "pyvenv.cfg").read_text()


def test_packaged_sbpsctl_runs(unpacked: Path) -> None:
    py = unpacked / VENV / "bin/python"
    # Only the venv: no PYTHONPATH, no user site, nothing from this checkout.
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    where = run(py, "-c", "import sbps, aiohttp, rtslib_fb, sys; print(sbps.__file__); "
                "print(sys.prefix)", env=env, cwd=unpacked)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(unpacked / VENV)) for line in where.stdout.splitlines())
    sbpsctl = unpacked / VENV / "bin/sbpsctl"
    helped = run(py, sbpsctl, "--help", env=env, cwd=unpacked)
    assert helped.returncode == 0 and "usage: sbpsctl" in helped.stdout, helped.stderr
    checked = run(py, sbpsctl, "config", "check", unpacked / "etc/sbps/marshal.toml",
                  env=env, cwd=unpacked)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith(": valid")
    daemon = run(py, unpacked / VENV / "bin/sbps-marshal", "--help", env=env, cwd=unpacked)
    assert daemon.returncode == 0 and "--once" in daemon.stdout, daemon.stderr


# --- the site's transactions: field agent -> sbps -> field agent -------------------------

DROP_IN = "etc/systemd/system/sbps-marshal.service.d/site.conf"
STATE = "var/lib/sbps/state/claims-journal.json"


@pytest.mark.parametrize("restart_always", [False, True],
                         ids=["macro-postun", "postun-restarts"])
def test_takeover_and_rollback_transactions(built: tuple[Path, Path], tmp_path: Path,
                                            restart_always: bool) -> None:
    """The field's RPM installed and its service enabled and running; sbps installed over it
    (the field's %preun disables and stops the unit sbps now owns, its %postun reloads and
    restarts it); then rolled back to the field's RPM. The site's drop-in and sbps's state
    stay, and after each transaction the unit is enabled and running as before."""
    if os.geteuid() != 0:
        pytest.skip("rpm --root runs scriptlets in a chroot: needs root")
    sbps_rpm, _ = built
    field_rpm = rpm_root.build_field_rpm(tmp_path / "field", restart_always=restart_always)
    root = rpm_root.make_root(tmp_path / "root")

    rpm_root.rpm(root, "-i", "--nodeps", field_rpm)
    assert rpm_root.unit_state(root) == (True, False)  # %post: preset
    rpm_root.set_unit_state(root, enabled=True, active=True)  # the site started it
    (root / DROP_IN).parent.mkdir(parents=True)
    (root / DROP_IN).write_text("[Service]\nEnvironment=SBPS_MARSHAL_IMS_TAGGING=false\n")
    before = len(rpm_root.calls(root))

    rpm_root.rpm(root, "-U", "--nodeps", sbps_rpm)
    assert rpm_root.rpm(root, "-qa").stdout.split() == [sbps_rpm.name.removesuffix(".rpm")]
    calls = rpm_root.calls(root)[before:]
    stop = calls.index("--no-reload disable --now sbps-marshal.service")  # the field's %preun
    assert calls[stop + 1:][-2:] == ["enable sbps-marshal.service",
                                     "restart sbps-marshal.service"], calls
    assert rpm_root.unit_state(root) == (True, True)
    assert not (root / "run/sbps-rpm-takeover").exists()
    assert not (root / "usr/lib/sbps-marshal").exists()
    assert (root / "usr/lib/systemd/system/sbps-marshal.service").read_text() == \
        (ROOT / "systemd/sbps-marshal.service").read_text()
    assert (root / DROP_IN).read_text().endswith("IMS_TAGGING=false\n")
    (root / STATE).write_text("{}\n")  # what the daemon keeps

    # Rollback, as zypper does it: sbps erased, the field's package installed.
    rpm_root.rpm(root, "-e", "--nodeps", "sbps")
    assert rpm_root.unit_state(root) == (False, False)  # sbps's %preun on erase
    rpm_root.rpm(root, "-i", "--nodeps", field_rpm)
    assert rpm_root.rpm(root, "-qa").stdout.split() == [f"sbps-marshal-"
                                                         f"{rpm_root.FIELD_VERSION}-1.noarch"]
    assert rpm_root.unit_state(root)[0]  # enabled again by the field's %post
    assert (root / DROP_IN).exists() and (root / STATE).read_text() == "{}\n"

    # And forward again: the state sbps left is still its own.
    rpm_root.set_unit_state(root, enabled=True, active=True)
    rpm_root.rpm(root, "-U", "--nodeps", sbps_rpm)
    assert rpm_root.unit_state(root) == (True, True)
    assert (root / STATE).read_text() == "{}\n"
    assert oct((root / "var/lib/sbps/state").stat().st_mode & 0o777) == "0o700"


def test_takeover_keeps_a_stopped_unit_stopped(built: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    """Negative control of the restore: a field unit the site had disabled and stopped is
    not enabled or started by the upgrade."""
    if os.geteuid() != 0:
        pytest.skip("rpm --root runs scriptlets in a chroot: needs root")
    field_rpm = rpm_root.build_field_rpm(tmp_path / "field", restart_always=False)
    root = rpm_root.make_root(tmp_path / "root")
    rpm_root.rpm(root, "-i", "--nodeps", field_rpm)
    rpm_root.set_unit_state(root, enabled=False, active=False)
    rpm_root.rpm(root, "-U", "--nodeps", built[0])
    assert rpm_root.unit_state(root) == (False, False)
    assert not any(c.startswith(("enable", "restart", "start")) for c in rpm_root.calls(root))
