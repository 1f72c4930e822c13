"""What a step receives from the CLI: the lake, its run id, the seed."""
from __future__ import annotations

from dataclasses import dataclass

from saew.storage.lake import Lake


@dataclass(frozen=True)
class Context:
    lake: Lake
    run_id: str
    seed: int = 0

    @property
    def home(self):
        return self.lake.home
