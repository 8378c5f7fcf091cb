"""Every setting is documented: docs/settings.md is what `o2c config docs` generates, and no setting lacks a meaning."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from o2c.settings import Settings, settings_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_the_committed_settings_reference_is_what_the_code_generates() -> None:
    assert DOC.read_text() == settings_reference(), "run: o2c config docs > docs/settings.md"


def test_every_setting_has_a_description() -> None:
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
            elif not (info.description or "").strip():
                missing.append(f"{prefix}{name}")

    walk(Settings, "")
    assert missing == []
