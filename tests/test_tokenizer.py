"""Loading a checkpoint's tokenizer: the generic-backend fast path equals `AutoTokenizer`."""

import sys

import pytest

from s2jax.models.tokenizer import GENERIC_MODEL_TYPES, generic_backend, load_tokenizer
from s2jax.testing.tokenizers import TEXTS


@pytest.mark.parametrize("family", ["llama2", "mistral", "qwen2", "qwen3", "gemma3"])
def test_load_tokenizer_equals_auto_tokenizer(hf_checkpoint, family):
    from transformers import AutoTokenizer

    path = hf_checkpoint(family)
    ours = load_tokenizer(path)
    ref = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    assert type(ours) is type(ref)
    assert generic_backend(path) == (family != "qwen2")  # qwen2: AutoTokenizer's own class
    msgs = [{"role": "user", "content": TEXTS[0]}]
    assert ours(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]
    assert ours.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = ref(TEXTS[1])["input_ids"]
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, ours.all_special_ids) == \
        (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id, ref.all_special_ids)


def test_generic_model_types_load_as_the_generic_backend(hf_checkpoint, tmp_path):
    """Guards GENERIC_MODEL_TYPES against the installed transformers' AutoTokenizer."""
    import json
    import shutil

    from transformers import AutoTokenizer, TokenizersBackend

    path = shutil.copytree(hf_checkpoint("llama2"), tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    for model_type in GENERIC_MODEL_TYPES:
        (path / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
        assert type(AutoTokenizer.from_pretrained(str(path), local_files_only=True)) is \
            TokenizersBackend, model_type


def test_fast_path_does_not_import_torch(hf_checkpoint):
    import subprocess

    code = (f"import sys; from s2jax.models.tokenizer import load_tokenizer; "
            f"load_tokenizer({str(hf_checkpoint('llama2'))!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
