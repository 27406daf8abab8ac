"""``gankit presets``: the presets with the first sentence of their descriptions."""

from __future__ import annotations

import re
import shutil
import sys
import textwrap

from gankit.config import preset_descriptions

# a sentence ends at . ! or ? followed by white space and a capital, a digit or an opening quote / bracket:
# "i.e. when", "vs. 2.48" and "4x4 -> 8x8" stay inside their sentence
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "vs.", "etc.", "approx.", "resp.")


def first_sentence(text: str) -> str:
    """The whole first sentence of ``text`` (white space collapsed), without its final full stop."""
    text = " ".join(text.split())
    for end in _SENTENCE_END.finditer(text):
        if not text[:end.start()].lower().endswith(_ABBREVIATIONS):
            return text[:end.start()].rstrip(".")
    return text.rstrip(".")


def preset_table(width: int | None = None) -> str:
    """One row per preset: its name, padded, then the whole first sentence of its description. ``width`` wraps
    the sentences at word boundaries, continued under the description column; by default a terminal's width, and
    one line per preset when the output is not a terminal (a pipe, a file: one line each to grep)."""
    descriptions = preset_descriptions()
    name_width = max(len(n) for n in descriptions)
    if width is None and sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    indent = " " * (name_width + 2)
    rows = []
    for name, text in descriptions.items():
        sentence = first_sentence(text)
        head = f"{name:<{name_width}}  "
        if width is None or width - len(indent) < 30:  # too narrow to wrap usefully: one line
            rows.append(head + sentence)
        else:
            rows.append(textwrap.fill(sentence, width, initial_indent=head, subsequent_indent=indent,
                                      break_long_words=False, break_on_hyphens=False))
    return "\n".join(rows)
