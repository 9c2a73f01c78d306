"""The sweep's engine (`s2jax.run.execute.Engine`) across a full fine-tune: it gets the base
weights back into the model and sampler it holds, and the stage writes no last checkpoint."""

import jax
import jax.numpy as jnp
import numpy as np

from s2jax.core.text_generator import SamplingParams
from s2jax.run.config import ExperimentConfig
from s2jax.run.execute import Engine
from s2jax.run.stages import finetune_stage
from s2jax.toy.demo import base_model_dir
from s2jax.train.config import TrainConfig

PROMPTS = [[{"role": "user", "content": "Is the coin heads up?"}],
           [{"role": "user", "content": "Flip it twice."}]]
GREEDY = SamplingParams(max_new_tokens=12)


def _texts(engine: Engine) -> list[str]:
    return [row[0].text for row in engine.sampler(PROMPTS, GREEDY)]


def test_after_a_full_fine_tune_the_engine_samples_the_base_weights_with_the_same_sampler(
        tmp_path):
    config = ExperimentConfig(name="e", model=str(base_model_dir()), task="toy/coin_flip",
                              method="rar_1step", max_batch=4, max_len=128)
    engine = Engine().use(config)
    sampler, before = engine.sampler, _texts(engine)
    # device copies: a numpy view of a weight would keep its buffer from being donated
    base = {k: jnp.array(v, copy=True) for k, v in engine.model.params().items()}
    examples = [{"messages": [*p, {"role": "assistant", "content": "tails tails tails"}]}
                for p in PROMPTS] * 2
    train = TrainConfig(steps=3, seq_len=64, batch_size=4, learning_rate=3e-2, warmup_steps=0)
    finetune_stage(engine.model, engine.tokenizer, examples, train, tmp_path / "t",
                   mesh=engine.mesh, final_checkpoint=False)
    engine.holds = "tuned"  # as run_finetune marks it
    assert all(v.is_deleted() for v in engine.base.values())  # the fine-tune took the buffers
    tuned = {k: jnp.array(v, copy=True) for k, v in engine.model.params().items()}
    assert any(not np.array_equal(tuned[k], base[k]) for k in base)
    assert (tmp_path / "t" / "model" / "config.json").is_file()  # exported ...
    ckpts = tmp_path / "t" / "checkpoints"
    assert not ckpts.exists() or not [p for p in ckpts.iterdir() if p.name.isdigit()]  # ... only

    engine.use(config)  # the base again, in the sampler that has its programs compiled
    assert engine.sampler is sampler and engine.holds == "base"
    for k, v in engine.model.params().items():
        np.testing.assert_array_equal(np.asarray(v), base[k], err_msg=k)
    for k, v in engine.sampler.params.items():
        np.testing.assert_array_equal(np.asarray(jax.device_get(v)), base[k], err_msg=k)
    assert _texts(engine) == before
    engine.use(config, tmp_path / "t" / "model")  # the exported model, then the base again
    for k, v in engine.sampler.params.items():
        np.testing.assert_array_equal(np.asarray(jax.device_get(v)), tuned[k], err_msg=k)
    engine.use(config)
    assert _texts(engine) == before
