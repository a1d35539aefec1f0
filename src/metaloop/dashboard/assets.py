"""The page's static files (HTML, CSS, JS), shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ASSETS = ("index.html", "style.css", "charts.js", "app.js")


def static_dir() -> Path:
    """The directory holding the assets."""
    return Path(str(resources.files("metaloop.dashboard") / "static"))


def read_asset(name: str) -> str:
    """One asset's text (``name`` is one of :data:`ASSETS`)."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset {name!r}")
    return (static_dir() / name).read_text(encoding="utf-8")
