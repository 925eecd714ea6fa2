"""Which versions a statement applies to — `{tensorflow: …, keras: …}` with PEP 440 specifiers, and the run's
dtype_policy / jit_compile — written the same way wherever a file says it: a scenario's `skip:` and `xfail:`, an
accepted change's `where:`. Validated by pydantic; imports neither numpy nor Keras."""

from __future__ import annotations

from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .choices import DtypePolicy


class Strict(BaseModel):
    """What a YAML file gives: no unknown keys, no coercion between types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Versions(Strict):
    """Applies when every given specifier matches the versions that train (and every given setting equals the run's)."""

    tensorflow: str | None = Field(default=None, max_length=200)  # a PEP 440 specifier set, e.g. ">=2.16,<2.18"
    keras: str | None = Field(default=None, max_length=200)
    dtype_policy: DtypePolicy | None = None  # the setting this run trains with
    jit_compile: bool | None = None

    @field_validator("tensorflow", "keras")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                SpecifierSet(value)
            except (InvalidSpecifier, ValueError):  # ValueError: a version of over 4300 digits
                raise ValueError(f"{value!r} is not a version specifier such as '>=3' or '<2.13,>=2.12'") from None
        return value

    def applies(self, versions: dict[str, str], settings: dict[str, Any] | None = None) -> bool:
        """True when the TensorFlow and Keras versions in `versions` meet every given specifier, and the run's
        `settings` (dtype_policy, jit_compile: as the scenario trains) equal every given one."""
        for key in ("tensorflow", "keras"):
            wanted = getattr(self, key)
            if wanted is not None and not SpecifierSet(wanted).contains(versions.get(key) or "", prereleases=True):
                return False
        for key in ("dtype_policy", "jit_compile"):
            wanted = getattr(self, key)
            if wanted is not None and (settings or {}).get(key) != wanted:
                return False
        return True

    def describe(self) -> str:
        keys = ("tensorflow", "keras", "dtype_policy", "jit_compile")
        given = [f"{k} {_said(getattr(self, k))}" for k in keys if getattr(self, k) is not None]
        return ", ".join(given) or "always"


class VersionCondition(Versions):
    """`skip:` / `xfail:` — applies when every given specifier matches the versions that train; and why."""

    reason: str = Field(default="", max_length=1000)

    @field_validator("reason")
    @classmethod
    def _one_line(cls, value: str) -> str:
        """pytest prints the reason on its SKIPPED/XFAIL line: a reason is one line, its whitespace folded."""
        return " ".join(value.split())


def _said(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
