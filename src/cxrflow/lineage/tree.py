"""The lineage tree: typed nodes that print for people (`to_text`) and serialise for tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class NodeKind(StrEnum):
    """What a node stands for."""

    QUERY = "query"
    MODEL_VERSION = "model_version"
    MLFLOW_RUN = "mlflow_run"
    PIPELINE_RUN = "pipeline_run"
    PARAMETERS = "parameters"
    DATA_VERSION = "data_version"
    SPLIT = "split"
    INGESTION = "ingestion"
    GIT_COMMIT = "git_commit"
    SUBJECT = "subject"
    NOTE = "note"


@dataclass(frozen=True)
class LineageNode:
    """One node: its kind, a one-line label, attributes and children."""

    kind: NodeKind
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)
    children: tuple[LineageNode, ...] = ()

    def walk(self) -> Iterator[LineageNode]:
        """This node and every descendant, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, kind: NodeKind) -> list[LineageNode]:
        """Every node of `kind` in the tree."""
        return [n for n in self.walk() if n.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "label": self.label,
            "attrs": self.attrs,
            "children": [c.to_dict() for c in self.children],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The tree as JSON (stable key order) for tools."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineageNode:
        return cls(
            NodeKind(d["kind"]),
            d["label"],
            dict(d.get("attrs", {})),
            tuple(cls.from_dict(c) for c in d.get("children", [])),
        )

    def to_text(self) -> str:
        """An indented tree for people: label, then `key: value` lines, then children."""
        lines: list[str] = []
        self._text(lines, "", "")
        return "\n".join(lines) + "\n"

    def _text(self, lines: list[str], first: str, rest: str) -> None:
        lines.append(f"{first}[{self.kind.value}] {self.label}")
        pad = rest + ("│   " if self.children else "    ")
        for key, value in self.attrs.items():
            if isinstance(value, dict):
                lines.append(f"{pad}{key}:")
                lines += [f"{pad}  {k} = {v}" for k, v in value.items()]
            elif isinstance(value, list | tuple):
                lines.append(f"{pad}{key}: {', '.join(str(v) for v in value) or '-'}")
            else:
                lines.append(f"{pad}{key}: {value}")
        for i, child in enumerate(self.children):
            last = i == len(self.children) - 1
            child._text(
                lines, rest + ("└── " if last else "├── "), rest + ("    " if last else "│   ")
            )
