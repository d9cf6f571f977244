"""The accuracy guard: a compressed variant is kept only if it loses at most `max_drop` mAP50-95 on a named set."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

from edged.factory.int8 import Int8Recipe, Quantized
from edged.zoo.eval import EvalReport


class CandidateResult(BaseModel):
    recipe: Int8Recipe
    description: str
    map50_95: float
    map50: float
    parent_map50_95: float
    drop: float = Field(description="parent mAP50-95 minus this candidate's (negative: it gained)")
    file_bytes: int
    within_guard: bool
    quantizer_warnings: list[str] = Field(default_factory=list, description="distinct kinds, with counts")
    notes: list[str] = Field(default_factory=list, description="what the recipe's refinements found and did")
    report: EvalReport = Field(exclude=True)


class AccuracyGuard:
    def __init__(self, max_drop: float) -> None:
        self.max_drop = max_drop

    def judge(
        self, recipe: Int8Recipe, parent: EvalReport, child: EvalReport, model: Path, quantized: Quantized
    ) -> CandidateResult:
        drop = round(parent.map50_95 - child.map50_95, 4)
        return CandidateResult(
            recipe=recipe,
            description=recipe.describe(),
            map50_95=child.map50_95,
            map50=child.map50,
            parent_map50_95=parent.map50_95,
            drop=drop,
            file_bytes=model.stat().st_size,
            within_guard=drop <= self.max_drop,
            quantizer_warnings=_kinds(quantized.warnings),
            notes=quantized.notes,
            report=child,
        )

    @staticmethod
    def best(candidates: list[CandidateResult]) -> CandidateResult:
        """The most accurate; on a tie the smaller file, then the earlier (simpler) recipe."""
        return max(candidates, key=lambda c: (c.map50_95, -c.file_bytes, -candidates.index(c)))

    def refusal(self, best: CandidateResult, parent: EvalReport) -> str:
        return (
            f"refused: the best int8 candidate ({best.description}) loses {best.drop:.4f} mAP50-95 "
            f"on {parent.eval_set} ({parent.map50_95:.4f} -> {best.map50_95:.4f}), "
            f"more than --max-drop {self.max_drop}; nothing was written. --force keeps it anyway; "
            "a larger --max-drop or another technique may suit this model better"
        )


def _kinds(warnings: list[str]) -> list[str]:
    """'Quantized bias `998` exceeds ...' x 15 -> one line with the count (tensor names vary, the kind does not)."""
    counts: dict[str, int] = {}
    for message in warnings:
        kind = re.sub(r"`[^`]*`|'[^']*'", "`...`", message.splitlines()[0] if message else "")
        counts[kind] = counts.get(kind, 0) + 1
    return [f"{n} x {kind}" if n > 1 else kind for kind, n in counts.items()]
