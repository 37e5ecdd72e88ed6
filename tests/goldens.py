"""The golden rendered configs: each target's cases.yaml, rendered into collector-configs/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mfotel.collector._render import TARGETS_DIR, render

REPO = Path(__file__).parent.parent
GOLDEN_DIR = REPO / "collector-configs"


@dataclass(frozen=True)
class Case:
    target: str
    name: str
    targets: tuple[str, ...]
    profile: str
    assignments: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.target}/{self.name}"

    @property
    def path(self) -> Path:
        return GOLDEN_DIR / self.target / f"{self.name}.yaml"

    def render(self) -> str:
        return render(list(self.targets), self.profile, list(self.assignments))


def cases() -> list[Case]:
    out = []
    for spec in sorted(TARGETS_DIR.glob("*/cases.yaml")):
        target = spec.parent.name
        for name, raw in (yaml.safe_load(spec.read_text()) or {}).items():
            raw = raw or {}
            out.append(
                Case(
                    target=target,
                    name=name,
                    targets=tuple(raw.get("targets", [target])),
                    profile=raw.get("profile", "dev"),
                    assignments=tuple(raw.get("set", [])),
                )
            )
    return out


if __name__ == "__main__":  # python tests/goldens.py: rewrite every golden from the templates
    for case in cases():
        case.path.parent.mkdir(parents=True, exist_ok=True)
        case.path.write_text(case.render())
        print(case.path.relative_to(REPO))
