"""What a step receives from the CLI: the lake, its run id, the seed, and for resuming, the
command words and the run's ``resume_key`` (``ctx.lake.finished_units(ctx.command,
ctx.params_key)`` are the units an interrupted earlier run of the same command finished)."""
from __future__ import annotations

from dataclasses import dataclass

from saew.storage.lake import Lake


@dataclass(frozen=True)
class Context:
    lake: Lake
    run_id: str
    seed: int = 0
    command: str = ""      # e.g. "ingest sae"
    params_key: str = ""   # saew.storage.lake.resume_key of the run's params JSON

    @property
    def home(self):
        return self.lake.home

    def finished_units(self) -> set[str]:
        """Units an interrupted earlier run of this command with the same params finished."""
        return self.lake.finished_units(self.command, self.params_key)
