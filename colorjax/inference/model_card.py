"""What a model folder tells people about itself: a title, a one-line summary and its
limitations, read from the folder's model card (``README.md``) and its ``generator.json``.

``generator.json`` may carry ``title``, ``summary`` (a string) and ``limitations`` (a list of
strings); what it leaves out comes from ``README.md``: the first ``#`` heading is the title,
the first sentence of the first paragraph of prose below it the summary, and the items of the
list (or the paragraphs) under the first heading that names limitations are the limitations.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from colorjax.inference.bundle import BUNDLE_CONFIG

CARD = "README.md"
_LIMITATIONS_HEADING = re.compile(r"^#+\s.*limitation", re.IGNORECASE)
_NOT_PROSE = re.compile(r"^(#|\||```|!\[|<|>|[-*+]\s|\d+\.\s)")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*_\[(])")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A model's title, one-line summary and limitations (empty where the card has none)."""

    title: str = ""
    summary: str = ""
    limitations: tuple[str, ...] = ()


def _blocks(lines: list[str]) -> list[list[str]]:
    """Runs of non-blank lines; a heading is a block of its own, a fenced code block one
    block whatever it holds."""
    blocks: list[list[str]] = []
    current: list[str] = []
    fenced = False
    for line in lines:
        heading = line.startswith("#") and not fenced
        if (heading or not line.strip()) and not fenced:
            if current:
                blocks.append(current)
            current = []
            if heading:
                blocks.append([line])
        else:
            current.append(line)
        if line.startswith("```"):
            fenced = not fenced
            if not fenced:
                blocks.append(current)
                current = []
    if current:
        blocks.append(current)
    return blocks


def _joined(lines: list[str]) -> str:
    return " ".join(line.strip() for line in lines)


def _summary(blocks: list[list[str]]) -> str:
    """The first sentence of the first paragraph of prose after the title."""
    for block in blocks[1:]:
        if block[0].startswith("#"):
            continue
        if not _NOT_PROSE.match(block[0]):
            return _SENTENCE_END.split(_joined(block), maxsplit=1)[0]
    return ""


def _items(block: list[str]) -> list[str]:
    """A list block's items (continuation lines joined), or the block as one paragraph."""
    if not _ITEM.match(block[0]):
        return [_joined(block)]
    items: list[list[str]] = []
    for line in block:
        if _ITEM.match(line):
            items.append([_ITEM.sub("", line)])
        else:
            items[-1].append(line)
    return [_joined(item) for item in items]


def _limitations(blocks: list[list[str]]) -> tuple[str, ...]:
    """The items under the first heading that names limitations, up to the next heading."""
    start = next((i for i, b in enumerate(blocks) if _LIMITATIONS_HEADING.match(b[0])), None)
    if start is None:
        return ()
    found: list[str] = []
    for block in blocks[start + 1 :]:
        if block[0].startswith("#"):
            break
        found += _items(block)
    return tuple(found)


def parse_model_card(text: str) -> ModelCard:
    """Title, summary and limitations of a model card in markdown."""
    blocks = _blocks(text.splitlines())
    title = next((b[0].lstrip("#").strip() for b in blocks if b[0].startswith("# ")), "")
    return ModelCard(title, _summary(blocks), _limitations(blocks))


def read_model_card(folder: str | Path) -> ModelCard:
    """The model card of a model folder: ``generator.json``'s own fields, the rest from its
    ``README.md`` (an empty card when it has neither)."""
    folder = Path(folder)
    card = ModelCard()
    if (folder / CARD).is_file():
        card = parse_model_card((folder / CARD).read_text(encoding="utf-8"))
    if (folder / BUNDLE_CONFIG).is_file():
        described = json.loads((folder / BUNDLE_CONFIG).read_text())
        card = ModelCard(
            str(described.get("title", card.title)),
            str(described.get("summary", card.summary)),
            tuple(str(item) for item in described.get("limitations", card.limitations)),
        )
    return card
