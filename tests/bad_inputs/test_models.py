"""Model inputs: config.json fields (types, ranges, sizes), checkpoint files, tokenizers and chat
templates, damaged or planted weights. Each is one line naming the file and field, before any
weight is placed where that can be checked."""

import json
import os
import struct

import numpy as np
import pytest

from tests.bad_inputs.harness import (
    Case,
    bad_model,
    check,
    file,
    first_tensor,
    model_copy,
    nested,
)

INSPECT = ["inspect", "{model}"]


def _config(expect: str, **fields):
    return Case(INSPECT, bad_model(config=fields), expect)


def _drop(key):
    def edit(h):
        del h[first_tensor(h)][key]
        return h
    return edit


def _int_dtype(h):
    name = next(k for k in h if "embed" in k)
    h[name]["dtype"] = "I32"  # same item size: only the type is wrong
    return h


def _shape(h):
    name = next(k for k in h if "embed" in k)
    h[name]["shape"] = [h[name]["shape"][1], h[name]["shape"][0]]  # same size, transposed
    return h


def _extra_tensor(h):
    name = first_tensor(h)
    h["model.extra.weight"] = dict(h[name])
    return h


def _missing_tensor(h):
    del h[next(k for k in h if "layers.0.mlp.up_proj" in k)]
    return h


def _poison(value: float, which: str = "layers.2.self_attn.q_proj"):
    """A copy of the toy model with one element of `which` set to `value` (NaN, Inf)."""
    def setup(tmp):
        d = model_copy(tmp)
        blob = bytearray((d / "model.safetensors").read_bytes())
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        key = next(k for k in header if which in k)
        start = 8 + n + header[key]["data_offsets"][0]
        blob[start:start + 4] = np.float32(value).tobytes()
        (d / "model.safetensors").write_bytes(bytes(blob))
        return {"model": d}
    return setup


def _template(template: str):
    def setup(tmp):
        d = model_copy(tmp)
        (d / "chat_template.jinja").write_text(template)
        return {"model": d}
    return setup


def _fifo_in_model(name: str):
    def setup(tmp):
        d = model_copy(tmp)
        (d / name).unlink(missing_ok=True)
        os.mkfifo(d / name)
        return {"model": d}
    return setup


def _index(weight_map):
    def setup(tmp):
        d = model_copy(tmp)
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return {"model": d}
    return setup


def _planted_cache(tmp):
    """A file planted where the pinned SmolLM2 would be cached: loading it by name must fail."""
    from s2jax.models.fetch import PINNED

    target = tmp / "cache" / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    (target / PINNED["smollm2-135m-instruct"].filename).write_bytes(b"GGUF" + bytes(64))
    return {}


CACHE = {"S2JAX_CACHE": "{tmp}/cache"}

CASES = {
    # config.json: types and ranges of each field
    "hidden_size a string": _config("'hidden_size' is '128'", hidden_size="128"),
    "hidden_size negative": _config("'hidden_size' is -1", hidden_size=-1),
    "hidden_size zero": _config("'hidden_size' is 0", hidden_size=0),
    "hidden_size fractional": _config("'hidden_size' is 127.5", hidden_size=127.5),
    "hidden_size boolean": _config("'hidden_size' is True", hidden_size=True),
    "num_hidden_layers zero": _config("'num_hidden_layers' is 0", num_hidden_layers=0),
    "num_hidden_layers huge": _config("'num_hidden_layers' is 100000",
                                      num_hidden_layers=100000),
    "num_attention_heads zero": _config("'num_attention_heads' is 0", num_attention_heads=0),
    "num_attention_heads null": _config("'num_attention_heads' is None",
                                        num_attention_heads=None),
    "num_attention_heads missing": _config("missing field 'num_attention_heads'",
                                           num_attention_heads=...),
    "num_key_value_heads not dividing": _config("not a multiple of num_key_value_heads",
                                                num_key_value_heads=3),
    "num_key_value_heads a list": _config("'num_key_value_heads' is [2]",
                                          num_key_value_heads=[2]),
    "head_dim odd": _config("head_dim 33", head_dim=33),
    "head_dim a string": _config("'head_dim' is '32'", head_dim="32"),
    "vocab_size 1e12": _config("'vocab_size' is 1000000000000", vocab_size=10 ** 12),
    "vocab_size missing": _config("missing field 'vocab_size'", vocab_size=...),
    "intermediate_size null": _config("'intermediate_size' is None", intermediate_size=None),
    "shapes of 10^14 parameters": _config("more than any model", hidden_size=1 << 20,
                                          intermediate_size=1 << 20, num_hidden_layers=4096,
                                          head_dim=64, num_attention_heads=16384,
                                          num_key_value_heads=16384),
    "rms_norm_eps negative": _config("'rms_norm_eps' is -1", rms_norm_eps=-1),
    "rms_norm_eps a string": _config("'rms_norm_eps' is 'small'", rms_norm_eps="small"),
    "rope_theta zero": _config("'rope_theta' is 0", rope_theta=0, rope_parameters=...),
    "rope_theta a string": _config("'rope_theta' is 'big'", rope_theta="big",
                                   rope_parameters=...),
    "rope_scaling a list": _config("expected an object", rope_scaling=[1, 2],
                                   rope_parameters=...),
    "rope linear without factor": _config("needs field 'factor'",
                                          rope_scaling={"rope_type": "linear"},
                                          rope_parameters=...),
    "rope linear factor 0": _config("'factor' is 0",
                                    rope_scaling={"rope_type": "linear", "factor": 0},
                                    rope_parameters=...),
    "rope llama3 equal factors": _config("equals high_freq_factor", rope_scaling={
        "rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 1,
        "original_max_position_embeddings": 8192}, rope_parameters=...),
    "rope_type yarn": _config("rope_type 'yarn'", rope_scaling={"rope_type": "yarn",
                                                                "factor": 2},
                              rope_parameters=...),
    "max_position_embeddings zero": _config("'max_position_embeddings' is 0",
                                            max_position_embeddings=0),
    "tie_word_embeddings a string": _config("'tie_word_embeddings' is 'yes'",
                                            tie_word_embeddings="yes"),
    "eos_token_id a string": _config("'eos_token_id' is '</s>'", eos_token_id="</s>"),
    "eos_token_id negative": _config("'eos_token_id' is -1", eos_token_id=-1),
    "bos_token_id a list": _config("'bos_token_id' is [1, 2]", bos_token_id=[1, 2]),
    "pad_token_id a float": _config("'pad_token_id' is 0.5", pad_token_id=0.5),
    "architectures a string": _config("'architectures'", architectures="LlamaForCausalLM"),
    "architectures an object": _config("'architectures'", architectures={"a": 1}),
    "architectures unknown": _config("'BertModel' is not supported", architectures=["BertModel"]),
    "architectures empty, model_type unknown": _config("unknown model_type 'bert'",
                                                       architectures=[], model_type="bert"),
    "multimodal Gemma 3": _config("multimodal Gemma 3",
                                  architectures=["Gemma3ForConditionalGeneration"]),
    "hidden_act gelu": _config("'hidden_act' is 'gelu'", hidden_act="gelu"),
    "mlp_bias true": _config("'mlp_bias' = True", mlp_bias=True),
    "quantization_config": _config("'quantization_config'", quantization_config={"bits": 4}),
    "sliding_window negative (Mistral)": _config("'sliding_window' is -5",
                                                 architectures=["MistralForCausalLM"],
                                                 sliding_window=-5),
    "layer_types of the wrong length (Qwen2)": _config(
        "'layer_types'", architectures=["Qwen2ForCausalLM"], use_sliding_window=True,
        sliding_window=8, layer_types=["full_attention"]),
    "use_sliding_window a string (Qwen2)": _config(
        "'use_sliding_window' is 'yes'", architectures=["Qwen2ForCausalLM"],
        use_sliding_window="yes", sliding_window=8),
    # config.json as a file
    "config.json nested 100000 deep": Case(
        INSPECT, bad_model(file="config.json", data=nested(100000).encode()), "nested too"),
    "config.json a 5000-digit integer": Case(
        INSPECT, bad_model(file="config.json", data=b'{"vocab_size": ' + b"9" * 5000 + b"}"),
        "unreadable JSON"),
    "config.json not UTF-8": Case(INSPECT, bad_model(file="config.json", data=b'{"a": "\xff"}'),
                                  "not UTF-8"),
    "config.json empty": Case(INSPECT, bad_model(file="config.json", data=b""),
                              "not valid JSON"),
    "config.json of 65 MiB": Case(
        INSPECT, bad_model(file="config.json", data=b" " * (65 << 20) + b"{}"),
        "larger than any"),
    "config.json missing": Case(INSPECT, bad_model(remove="config.json"), "no such file"),
    "config.json a FIFO": Case(INSPECT, _fifo_in_model("config.json"), "FIFO"),
    "corrupt config.json": Case(INSPECT, bad_model(file="config.json", data=b"{"),
                                "not valid JSON"),
    "model path missing": Case(["inspect", "{tmp}/nope"], None, "nope"),
    "model path a plain file": Case(["inspect", "{f}"], file("x.bin", b"abc"), "x.bin"),
    # safetensors files
    "safetensors header is a list": Case(INSPECT, bad_model(lambda h: [h]),
                                         "expected an object of tensors"),
    "safetensors entry without data_offsets": Case(INSPECT, bad_model(_drop("data_offsets")),
                                                   "'data_offsets'"),
    "safetensors entry without dtype": Case(INSPECT, bad_model(_drop("dtype")), "needs 'dtype'"),
    "safetensors entry is not an object": Case(
        INSPECT, bad_model(lambda h: {**h, first_tensor(h): 7}), "needs 'dtype'"),
    "float tensor stored as int32": Case(INSPECT, bad_model(_int_dtype),
                                         "expected a floating-point dtype"),
    "tensor of the wrong shape": Case(INSPECT, bad_model(_shape), "expected [512, 128]"),
    "tensor missing": Case(INSPECT, bad_model(_missing_tensor), "has no tensor"),
    "tensor extra": Case(INSPECT, bad_model(_extra_tensor), "not used by"),
    "safetensors header not JSON": Case(
        INSPECT, bad_model(file="model.safetensors", data=struct.pack("<Q", 4) + b"{{{{"),
        "corrupt safetensors header"),
    "safetensors header nested deep": Case(
        INSPECT, bad_model(file="model.safetensors",
                           data=struct.pack("<Q", 200000) + nested(100000).encode()),
        "nested too deeply"),
    "safetensors header claims 2 GB": Case(
        INSPECT, bad_model(file="model.safetensors", data=struct.pack("<Q", 2 << 30) + b"{}"),
        "truncated safetensors file"),
    "safetensors file of 3 bytes": Case(
        INSPECT, bad_model(file="model.safetensors", data=b"abc"), "truncated"),
    "safetensors a FIFO": Case(INSPECT, _fifo_in_model("model.safetensors"), "FIFO"),
    "no safetensors at all": Case(INSPECT, bad_model(remove="model.safetensors"),
                                  "no *.safetensors"),
    "index names a file outside the dir": Case(INSPECT, _index({"x": "../model.safetensors"}),
                                               "weight_map"),
    "index weight_map a list": Case(INSPECT, _index(["model.safetensors"]), "weight_map"),
    "index names a missing shard": Case(INSPECT, _index({"x": "other.safetensors"}),
                                        "which is missing"),
    "NaN weight": Case(INSPECT, _poison(float("nan")), "holds NaN or Inf"),
    "Inf weight in the embedding": Case(INSPECT, _poison(float("inf"), "embed_tokens"),
                                        "model.embed_tokens.weight holds NaN or Inf"),
    "--dtype float16": Case(["inspect", "{model}", "--dtype", "float16"], file("x", ""),
                            "float16"),
    "--mesh with a zero axis": Case(["inspect", "{model}", "--mesh", "fsdp=0"], file("x", ""),
                                    "fsdp=0"),
    "--mesh garbage": Case(["inspect", "{model}", "--mesh", "lots"], file("x", ""), "lots"),
    # tokenizers and chat templates
    "corrupt tokenizer.json": Case(INSPECT, bad_model(file="tokenizer.json",
                                                      data=b'{"version": '),
                                   "tokenizer.json: not valid JSON"),
    "tokenizer.json nested deep": Case(
        INSPECT, bad_model(file="tokenizer.json", data=nested(100000).encode()),
        "nested too deeply"),
    "tokenizer.json a FIFO": Case(INSPECT, _fifo_in_model("tokenizer.json"), "FIFO"),
    "no tokenizer files": Case(INSPECT, lambda tmp: {"model": _strip_tokenizer(tmp)},
                               "no tokenizer files"),
    "corrupt generation_config.json": Case(
        INSPECT, bad_model(file="generation_config.json", data=b"{'a': 1}"),
        "generation_config.json: not valid JSON"),
    "generation_config.json a list": Case(
        INSPECT, bad_model(file="generation_config.json", data=b"[1]"),
        "expected a JSON object"),
    "chat template with a Jinja syntax error": Case(
        INSPECT, _template("{% for m in messages %}{{ m['content'] }"), "chat template failed"),
    "chat template raising its own exception": Case(
        INSPECT, _template("{{ raise_exception('roles must alternate') }}"),
        "roles must alternate"),
    "chat template using an undefined filter": Case(
        INSPECT, _template("{{ messages | nosuchfilter }}"), "chat template failed"),
    # models loaded by name from the cache
    "a file planted in the model cache": Case(
        ["inspect", "smollm2-135m-instruct"], _planted_cache,
        "differs from the one pinned", env=CACHE),
    "a pinned model not fetched": Case(["inspect", "qwen2.5-coder-0.5b"], None,
                                       "not fetched yet", env=CACHE),
}


def _strip_tokenizer(tmp):
    d = model_copy(tmp)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (d / name).unlink(missing_ok=True)
    return d


@pytest.mark.parametrize("name", CASES)
def test_bad_model_input(name, tmp_path, capsys):
    case = CASES[name]
    if case.env:
        case = Case(case.argv, case.setup, case.expect, case.code,
                    {k: v.format(tmp=tmp_path) for k, v in case.env.items()})
    check(case, tmp_path, capsys)
