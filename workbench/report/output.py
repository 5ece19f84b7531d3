"""Writing a report's files: the data folder beside the HTML (with its manifest) and the PDF (headless Chromium)."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from atinuke.errors import UserInputError
from atinuke.io import atomic_dir, atomic_path

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def check_data_dir(data_dir: Path) -> None:
    """Refuse to replace a ``<stem>_data/`` folder that holds files an earlier report did not write.

    Raises:
        UserInputError: naming the folder and one foreign file.
    """
    if not data_dir.exists():
        return
    if not data_dir.is_dir():
        raise UserInputError(f"{data_dir} is a file; the report's data folder goes there (choose another --out)")
    present = sorted(p.name for p in data_dir.iterdir())
    if not present:
        return
    manifest = data_dir / "provenance.json"
    try:
        written = set(json.loads(manifest.read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError, AttributeError):
        written = set()
    foreign = [name for name in present if name != "provenance.json" and name not in written]
    if foreign or not manifest.is_file():
        raise UserInputError(f"{data_dir} holds files this report did not write ({(foreign or present)[0]}); "
                             "move them or choose another --out")


def write_data(data_dir: Path, tables: dict[str, pd.DataFrame], provenance: dict[str, Any]) -> list[Path]:
    names = []
    with atomic_dir(data_dir) as tmp:
        tmp.chmod(0o755)
        for name, frame in tables.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            frame.to_csv(tmp / f"{safe}.csv", index=False)
            names.append(f"{safe}.csv")
            try:
                frame.to_parquet(tmp / f"{safe}.parquet", index=False)
                names.append(f"{safe}.parquet")
            except (ValueError, TypeError, ImportError) as error:  # mixed-type object columns
                logger.debug("%s: no parquet copy (%s)", name, error)
        # The manifest of what this report wrote: a later report may replace exactly these files.
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "files": names}, indent=2, default=str) + "\n",
                                             encoding="utf-8")
        names.insert(0, "provenance.json")
    return [data_dir / n for n in names]


def find_chromium() -> Optional[str]:
    """Path of a Chromium executable, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_path: Path, required: bool = False, timeout: float = 120.0) -> Optional[Path]:
    chromium = find_chromium()
    if chromium is None:
        if required:
            raise UserInputError("--pdf: no chromium executable found (apt-get install chromium)")
        logger.info("chromium not found; no PDF")
        return None
    target = html_path.with_suffix(".pdf")
    with atomic_path(target, suffix=".pdf") as tmp:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
                   "--virtual-time-budget=15000", f"--print-to-pdf={tmp}", html_path.resolve().as_uri()]
        try:
            subprocess.run(command, capture_output=True, timeout=timeout, check=True)
        except (subprocess.SubprocessError, OSError) as error:
            if required:
                raise UserInputError(f"chromium could not print {html_path} to PDF ({error})") from error
            logger.warning("no PDF: chromium failed (%s)", error)
            tmp.unlink(missing_ok=True)
            return None
        if not tmp.exists() or tmp.stat().st_size == 0:
            if required:
                raise UserInputError(f"chromium wrote no PDF for {html_path}")
            return None
    return target
