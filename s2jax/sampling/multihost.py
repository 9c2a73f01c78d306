"""Generation split over processes: one model replica per process, outputs merged everywhere.

A multi-process run holds the model on a mesh spanning every process (e.g. fsdp across hosts,
as training wants it). Decoding over such a mesh would put a cross-host collective in every
token step, and every host would have to agree on each refill of the continuous batch. Instead
each process gets its own replica of the weights, sharded over its local devices only, and
samples a contiguous slice of the prompts (`split_for_process`) with its own `Sampler`; the
slices are then all-gathered, so every process returns the same list in prompt order. Samples
are keyed by their prompt's tokens and their index, so the split draws exactly the samples that
one process would. A replica must fit on one process's devices: 70B in bf16 (140 GB) does on a
v5p host (4 x 95 GB) and on an 8 x H100 node.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from s2jax.core.errors import S2JaxError
from s2jax.core.text_generator import Prompt, Sample, SamplingParams
from s2jax.models.config import ModelConfig
from s2jax.models.module import Transformer
from s2jax.models.params import param_specs
from s2jax.models.weights import Weights
from s2jax.parallel.distributed import split_for_process
from s2jax.parallel.sharding import MESH_AXES, logical_to_spec
from s2jax.sampling.chat import encode_prompts
from s2jax.sampling.engine import Sampler


def _model_devices(model) -> list:
    """The devices the model's weights span, in their mesh order."""
    sharding = model.param("embed").get_value().sharding
    mesh = getattr(sharding, "mesh", None)
    return list(mesh.devices.flat) if isinstance(mesh, Mesh) else sorted(sharding.device_set,
                                                                         key=lambda d: d.id)


def default_local_mesh(cfg: ModelConfig, count: int) -> dict[str, int]:
    """Tensor-parallel over the most local devices that divide the KV heads, data over the rest."""
    tensor = max(t for t in range(1, count + 1)
                 if count % t == 0 and cfg.num_kv_heads % t == 0 and cfg.num_heads % t == 0)
    return dict(data=count // tensor, fsdp=1, tensor=tensor)


def local_replica(model, local_mesh: dict[str, int] | None = None) -> tuple[Transformer, Mesh]:
    """This process's copy of `model`, sharded over its own devices. Collective: call everywhere.

    Args:
      model: a `Transformer` whose weights live on a mesh over all processes' devices.
      local_mesh: {data, fsdp, tensor} sizes of each process's mesh (their product: the
        devices per process); default: `default_local_mesh`.

    Returns:
      (replica, mesh): a `Transformer` whose arrays are addressable by this process alone,
      and the local mesh they are on.
    """
    cfg = model.config
    params, mesh = replicate(cfg, model.params(), _model_devices(model), local_mesh)
    replica = Transformer.from_weights(Weights(cfg, params, dict(
        getattr(model, "generation_config", None) or {})))
    replica.dtype = getattr(model, "dtype", None)
    return replica, mesh


def replicate(cfg: ModelConfig, params: dict[str, jax.Array], devices: list,
              local_mesh: dict[str, int] | None = None) -> tuple[dict[str, jax.Array], Mesh]:
    """`params` (on a mesh over `devices`, every process's) as this process's whole copy over
    its own devices, and that local mesh. Collective: call everywhere."""
    by_process: dict[int, list] = {}
    for d in devices:
        by_process.setdefault(d.process_index, []).append(d)
    counts = {len(v) for v in by_process.values()}
    if len(counts) != 1:
        raise S2JaxError(f"model devices per process differ ({sorted(counts)}): a replica per "
                         "process needs the same number of devices on each")
    count = counts.pop()
    sizes = local_mesh or default_local_mesh(cfg, count)
    sizes = {a: int(sizes.get(a, 1)) for a in MESH_AXES}
    if int(np.prod(list(sizes.values()))) != count:
        raise S2JaxError(f"local mesh {sizes}: expected a product of {count} (the devices each "
                         "process holds)")
    grid = np.asarray([by_process[p] for p in sorted(by_process)], dtype=object)
    global_mesh = Mesh(grid.reshape(len(by_process), *sizes.values()), ("process", *MESH_AXES))
    mesh = Mesh(grid[sorted(by_process).index(jax.process_index())].reshape(*sizes.values()),
                MESH_AXES)
    specs = {name: logical_to_spec(spec.axes, spec.shape, mesh)
             for name, spec in param_specs(cfg).items()}
    # One program reshards every weight: fsdp shards from other hosts are gathered, and each
    # process ends up holding the whole model over its own devices (replicated on "process").
    gathered = jax.jit(lambda p: p, out_shardings={
        k: NamedSharding(global_mesh, specs[k]) for k in params})(params)
    return {name: jax.make_array_from_single_device_arrays(
        x.shape, NamedSharding(mesh, specs[name]), [s.data for s in x.addressable_shards])
        for name, x in gathered.items()}, mesh


def _allgather_json(obj) -> list:
    """`obj` of every process, in process order (JSON round trip). Collective."""
    if jax.process_count() == 1:
        return [obj]
    # only multi-process runs get here
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([data.size], np.int32))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(rows[p, :int(sizes[p, 0])])) for p in range(rows.shape[0])]


class MultihostSampler:
    """A `TextGenerator` over all processes: each samples its slice, all return everything.

    Every process must make the same calls with the same prompts (the slices are agreed on by
    index, and the merge is a collective). In a single process it is a plain `Sampler`.

    Args:
      model: a `Transformer` on a mesh over all processes' devices.
      tokenizer: its tokenizer.
      local_mesh: sizes of each process's mesh (see `local_replica`).
      **sampler_kwargs: passed on to `Sampler` (max_batch, max_len, chat, continuous, ...).
    """

    def __init__(self, model, tokenizer, *, local_mesh: dict[str, int] | None = None,
                 **sampler_kwargs):
        replica, mesh = local_replica(model, local_mesh)
        self.sampler = Sampler(replica, tokenizer, mesh=mesh, **sampler_kwargs)
        self.local_mesh = {a: mesh.shape[a] for a in MESH_AXES}

    def set_params(self, params: dict[str, jax.Array]) -> None:
        """Swaps in new weights (on the mesh over all processes, e.g. after fine-tuning): each
        process's replica is remade from them. Collective: call everywhere."""
        devices = list(params["embed"].sharding.mesh.devices.flat)
        self.sampler.set_params(replicate(self.sampler.cfg, params, devices,
                                          self.local_mesh)[0])

    def __call__(self, prompts: Sequence[Prompt], params: SamplingParams, **kwargs
                 ) -> list[list[Sample]]:
        """`params.n` samples per prompt, in prompt order, identical on every process."""
        ids = encode_prompts(self.sampler.tokenizer, prompts, chat=self.sampler.chat)
        return [[s for s, _ in row] for row in self.generate_ids(ids, params, **kwargs)]

    def generate_ids(self, ids: Sequence[Sequence[int]], params: SamplingParams, *,
                     first_sample: Sequence[int] | None = None, **kwargs
                     ) -> list[list[tuple[Sample, list[int]]]]:
        """`Sampler.generate_ids` over the split; `out[i][j]` = (sample, its token ids)."""
        part = split_for_process(ids, jax.process_index(), jax.process_count())
        firsts = None if first_sample is None else [first_sample[i] for i in part]
        mine = self.sampler.generate_ids([ids[i] for i in part], params,
                                         first_sample=firsts, **kwargs)
        rows = [[[s.text, s.num_tokens, s.finish_reason, t] for s, t in row] for row in mine]
        merged = [row for chunk in _allgather_json(rows) for row in chunk]
        return [[(Sample(text, n, reason), tokens) for text, n, reason, tokens in row]
                for row in merged]
