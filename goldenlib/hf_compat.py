"""Every transformers name the HF cross-check uses whose home or signature depends on the version.

The cross-check runs from the first release with Qwen2.5-VL (4.49) to the newest 5.x. Outside that
range, or when a name this module expects is missing, it raises :class:`UnsupportedVersion` (the
generator turns it into exit code 2, "cannot check"), never a bare ImportError or TypeError.
"""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

SUPPORTED = ">=4.49,<6"


class UnsupportedVersion(Exception):
    """The installed transformers cannot run the HF cross-check: outside ``SUPPORTED`` or an API break."""

    def __init__(self, installed: str, reason: str = ""):
        self.installed, self.supported, self.reason = installed, SUPPORTED, reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"transformers {installed} is installed, but the HF cross-check supports transformers {SUPPORTED}"
            f"{why}. Install a supported version (e.g. `uv pip install \"transformers{SUPPORTED}\"`) "
            "and run the check again; nothing was compared or written.")


def installed_version() -> str:
    """The installed transformers version string (raises UnsupportedVersion when it is not installed)."""
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        raise UnsupportedVersion("(none)", "transformers is not installed") from None


def is_supported(version: str) -> bool:
    """Whether ``version`` (a version string such as "4.57.1" or "5.0.0rc2") is in ``SUPPORTED``."""
    return SpecifierSet(SUPPORTED).contains(Version(version), prereleases=True)


def check_version(version: str | None = None) -> Version:
    """The parsed ``version`` (default: the installed one); UnsupportedVersion when out of range."""
    version = installed_version() if version is None else version
    try:
        parsed = Version(version)
    except Exception:
        raise UnsupportedVersion(version, "not a version string") from None
    if not is_supported(version):
        raise UnsupportedVersion(version)
    return parsed
