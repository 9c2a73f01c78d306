"""Orbax checkpoints of a run: the sharded train state and the data-iterator state, together.

Saves are asynchronous (training continues while a background thread writes) and atomic (a step
directory appears only once complete: locally by a rename, on gs:// by orbax's
commit_success.txt written last), so a run killed at any moment resumes from its last complete
step; only the `keep` most recent steps are kept.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from s2jax.core.errors import RunFailed, S2JaxError, machine_error
from s2jax.core.memory import gib
from s2jax.core.storage import AnyPath, as_path, is_remote
from s2jax.train.state import TrainState

# a checkpoint also holds metadata, and orbax writes a step before it removes the oldest
SPACE_MARGIN = 1.1
# GB of the state that orbax writes at once (its default, 96, took a second copy of the whole
# train state into the writer's buffers: +5.8 GB at Qwen2.5-0.5B's full fine-tune)
SAVE_CONCURRENT_GB = 1


class Checkpoints:
    """The checkpoints under `directory` (local, or gs://); one step = {"state": TrainState,
    "data": dict}."""

    def __init__(self, directory: AnyPath, keep: int = 2):
        # an object store (gs://) is an etils.epath.Path, which orbax takes as it is
        self.directory = as_path(directory) if is_remote(directory) else Path(directory).absolute()
        # temp dirs of a save a kill (or a full disk) interrupted are removed at the next start
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=True,
                                               cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
            "state": ocp.StandardCheckpointHandler(save_concurrent_gb=SAVE_CONCURRENT_GB),
            "data": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict) -> None:
        """Starts an async save of `state` and `data_state` as `step`.

        A disk without room for it fails here, before orbax writes anything; a disk that fills
        during the save fails at the next `save` or `wait`, each as one `RunFailed` line.
        """
        self.wait()  # the previous save is on disk (and its error, if any, raised) first
        need = SPACE_MARGIN * sum(x.nbytes for x in jax.tree.leaves(state))
        free = (shutil.disk_usage(self.directory).free if isinstance(self.directory, Path)
                else need)  # an object store has no free-space figure
        if need > free:
            raise RunFailed(f"{self.directory}: checkpoint step {step} needs about {gib(need)}, "
                            f"the disk has {gib(free)} free; {self._kept()}; free space and "
                            "rerun to resume")
        with self._failures(step):
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
                force=True)

    def _kept(self) -> str:
        good = self.manager.latest_step()
        return (f"the last complete checkpoint is step {good}" if good is not None
                else "no checkpoint was completed")

    @contextlib.contextmanager
    def _failures(self, step: int | None) -> Iterator[None]:
        """Turns a full disk (or another error of the machine) inside orbax into one line."""
        try:
            yield
        except Exception as e:
            machine = machine_error(e)
            if machine is None:
                raise
            at = f"checkpoint step {step}" if step is not None else "a checkpoint"
            raise RunFailed(f"{self.directory}: saving {at} failed: {machine}; {self._kept()}; "
                            "free space and rerun to resume") from None

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
        with self._failures(None):
            self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
