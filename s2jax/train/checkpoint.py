"""Orbax checkpoints of a run: the sharded train state and the data-iterator state, together.

Saves are asynchronous (training continues while a background thread writes) and atomic (a step
directory appears only once complete), so a run killed at any moment resumes from its last
complete step; only the `keep` most recent steps are kept.
"""

from __future__ import annotations

from pathlib import Path

import orbax.checkpoint as ocp

from s2jax.core.errors import S2JaxError
from s2jax.train.state import TrainState


class Checkpoints:
    """The checkpoints under `directory`; one step = {"state": TrainState, "data": dict}."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict) -> None:
        """Starts an async save of `state` and `data_state` as `step`."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

    def restore(self, step: int, target: TrainState) -> tuple[TrainState, dict]:
        """The state (placed as `target`'s shardings say) and the data state of `step`."""
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
        except (ValueError, KeyError, FileNotFoundError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise S2JaxError(f"{self.directory}/{step}: cannot restore the checkpoint "
                             f"({first}); was it written by a run with another config?") from None
        return out["state"], dict(out["data"])

    def wait(self) -> None:
        """Blocks until the pending async save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
