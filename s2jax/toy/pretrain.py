"""The deterministic pretraining recipe of the toy base model shipped in `s2jax/toy/base_model`.

corpus (s2jax.toy.corpus) -> byte-level BPE tokenizer with the chat template -> a ~0.9M-parameter
Llama -> next-token loss on every token of the packed transcripts, trained by the shared loop
(`s2jax.train.finetune` with `loss_on="all"`) -> `s2jax.save`. Every random choice derives from
`PretrainConfig.seed`; on one CPU device the run is bit-reproducible.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from flax import nnx

from s2jax.core.errors import S2JaxError
from s2jax.core.ownership import MODEL, TRAIN_RUN, check_dir
from s2jax.models.config import ModelConfig
from s2jax.models.loading import save
from s2jax.models.module import Transformer
from s2jax.models.params import num_params
from s2jax.models.tokenizer import SIMPLE_CHAT_TEMPLATE, train_bpe_tokenizer
from s2jax.toy.corpus import Chat, CorpusConfig, build_corpus
from s2jax.train.config import TrainConfig
from s2jax.train.loop import finetune


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """The recipe. Defaults produce the shipped model."""

    corpus: CorpusConfig = CorpusConfig()  # what the pretraining corpus holds
    vocab_size: int = 512  # BPE vocabulary incl. bytes and specials; small keeps letters apart
    hidden_size: int = 128  # D
    intermediate_size: int = 384  # F
    num_layers: int = 4  # L
    num_heads: int = 4  # N
    num_kv_heads: int = 2  # K
    head_dim: int = 32  # H
    seq_len: int = 320  # T of a packed row; longer transcripts are dropped (none by default)
    batch_size: int = 8  # packed rows per step
    steps: int = 1500  # optimizer steps
    learning_rate: float = 2e-3  # peak, after linear warmup; cosine decay to 10%
    warmup_steps: int = 100  # linear warmup steps
    weight_decay: float = 0.01  # AdamW's decoupled decay
    seed: int = 0  # initialisation and data order (the corpus has its own)

    def __post_init__(self):
        if self.steps < 1:
            raise S2JaxError(f"pretrain steps={self.steps}: expected >= 1")


def tokenizer_for(chats: list[Chat], vocab_size: int):
    """A BPE tokenizer trained on the rendered conversations (chat template included)."""
    texts = [m["content"] for chat in chats for m in chat]
    return train_bpe_tokenizer(texts, vocab_size, SIMPLE_CHAT_TEMPLATE)


def model_config(config: PretrainConfig, tokenizer):
    """The Llama `ModelConfig` of the base model, special ids taken from the tokenizer."""
    return ModelConfig(
        architecture="LlamaForCausalLM", vocab_size=len(tokenizer),
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_layers=config.num_layers, num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads, head_dim=config.head_dim,
        max_position_embeddings=1024, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_ids=(tokenizer.eos_token_id,),
        pad_token_id=tokenizer.pad_token_id)


def train_config(config: PretrainConfig, *, progress: bool = True):
    """The shared fine-tuning loop's config for pretraining: loss on every token, packed rows."""
    return TrainConfig(
        steps=config.steps, seq_len=config.seq_len, batch_size=config.batch_size, pack=True,
        loss_on="all", learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
        schedule="cosine", min_lr_ratio=0.1, weight_decay=config.weight_decay, b2=0.98,
        seed=config.seed, log_every=10, progress=progress, export=False)


def run_dir_of(out: str | Path) -> Path:
    """Where the training run of the model `out` goes: beside it, `OUT.run`."""
    out = Path(out)
    return out.with_name(out.name + ".run")


def check_outputs(out: str | Path) -> None:
    """Before any work: `out` and its run dir may be written (fresh, or s2jax's own)."""
    check_dir(out, "--out", MODEL, whole=True)
    check_dir(run_dir_of(out), "--out's run dir", TRAIN_RUN)


def pretrain(config: PretrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Runs the recipe and writes the HF checkpoint directory `out`.

    Args:
      config: the recipe.
      out: directory to write (atomically): config.json, model.safetensors, tokenizer files,
        generation_config.json. The training run goes to `out`/../`out.name`.run/; a rerun
        of the same recipe resumes it (another recipe is refused there: pick a new `out`).
      progress: show tqdm bars.

    Returns:
      Summary: parameters, corpus size, final loss, seconds.
    """
    start = time.time()
    out = Path(out)
    check_outputs(out)
    chats = build_corpus(config.corpus)
    tokenizer = tokenizer_for(chats, config.vocab_size)
    cfg = model_config(config, tokenizer)
    model = Transformer(cfg, rngs=nnx.Rngs(config.seed))
    run_dir = run_dir_of(out)
    finetune(model, tokenizer, chats, train_config(config, progress=progress), run_dir)
    save(model, tokenizer, out)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"params": num_params(cfg), "conversations": len(chats),
            "final_loss": summary.get("loss"), "seconds": round(time.time() - start, 1)}
