"""Locates the newest kernel uapi headers (linux-libc-dev 7.2) that tests/test_abi.py compiles against.

The lab tree carries them; without a built lab, linux-libc-dev and the libc6-dev that goes
with it (glibc's own constants such as F_SEAL_EXEC track the kernel's) are downloaded from
Debian sid into build/uapi/ with a private apt configuration, leaving the machine's apt state
untouched.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "uapi"
WANTED_MAJOR_MINOR = (7, 2)
PACKAGES = ("linux-libc-dev", "libc6-dev")
SID_SOURCE = "deb [trusted=yes] http://deb.debian.org/debian sid main\n"


def header_version(include_dir: Path) -> tuple[int, int, int]:
    """Reads LINUX_VERSION_CODE from <include_dir>/linux/version.h."""
    text = (include_dir / "linux" / "version.h").read_text()
    code = int(re.search(r"#define LINUX_VERSION_CODE (\d+)", text).group(1))
    return code >> 16, (code >> 8) & 0xFF, code & 0xFF


def _lab_trees() -> list[Path]:
    from gpuhil.lab.cache import cache_dir  # the lab's cache layout

    complete = [stamp.parent for stamp in (cache_dir() / "lab").glob("*/.complete")]
    return [tree / "rootfs" / "usr" / "include"
            for tree in sorted(complete, key=lambda p: p.stat().st_mtime, reverse=True)]


def _download() -> Path:
    dest = BUILD / "root"
    include = dest / "usr" / "include"
    if (include / "linux" / "version.h").exists():
        return include
    apt = BUILD / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "etc" / "sources.list").write_text(SID_SOURCE)
    opts = [
        f"-oDir::Etc::SourceList={apt}/etc/sources.list", "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={apt}/lists", f"-oDir::Cache={apt}/cache",
        "-oAcquire::Check-Valid-Until=false", "-oAPT::Sandbox::User=root",
    ]
    subprocess.run(["apt-get", *opts, "-q", "update"], check=True, capture_output=True)
    subprocess.run(["apt-get", *opts, "-q", "download", *PACKAGES], check=True,
                   capture_output=True, cwd=BUILD)
    tmp = BUILD / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for package in PACKAGES:
        debs = sorted(BUILD.glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {package} from sid produced no .deb")
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return include


def newest_uapi_include() -> Path:
    """Returns an include directory holding linux-libc-dev 7.2's headers (lab tree first)."""
    try:
        candidates = _lab_trees()
    except ImportError:
        candidates = []
    for include in candidates:
        if (include / "linux" / "version.h").exists() and header_version(include)[:2] >= WANTED_MAJOR_MINOR:
            return include
    return _download()
