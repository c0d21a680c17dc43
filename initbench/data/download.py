"""torchvision's downloads, with nothing left behind when they fail (offline machines)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def download_or_error(fetch: Callable[[], object], root: Path) -> Exception | None:
    """Run `fetch()` (a torchvision dataset class with download=True); on failure remove the folders it created
    under `root` (if they hold no file) and return the error, for the caller's own message."""
    created = [path for path in (root, *root.parents) if not path.exists()]
    try:
        fetch()
    except Exception as err:  # offline machines fail with URLError, proxies with others
        if created and not any(path.is_file() for path in created[-1].rglob("*")):
            shutil.rmtree(created[-1], ignore_errors=True)
        return err
    return None
