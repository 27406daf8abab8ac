"""``gankit presets``: the presets with the first sentence of their descriptions."""

from __future__ import annotations

from gankit.config import preset_descriptions


def preset_table() -> str:
    """One line per preset: its name, padded, then the first sentence of its description."""
    descriptions = preset_descriptions()
    width = max(len(n) for n in descriptions)
    return "\n".join(f"{name:<{width}}  {text.split('. ')[0].rstrip('.')}" for name, text in descriptions.items())
