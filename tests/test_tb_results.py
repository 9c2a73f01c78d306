"""A finished run's evaluation scalars and hyperparameters in TensorBoard, read back from the
events files with the protobufs tensorboardX ships (no TensorBoard needed)."""

import json
import struct
from pathlib import Path

from s2jax.run.tb_results import eval_scalars, flatten, write_tb_results

HPARAMS_START = "_hparams_/session_start_info"


def read_events(logdir: Path) -> tuple[dict[str, float], dict]:
    """({scalar tag: last value}, {hparam: value}) of every events file in `logdir`."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    scalars, hparams = {}, {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # TFRecord: length, its crc, the record, its crc
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            for v in event.summary.value:
                if v.tag == HPARAMS_START:
                    content = HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    for k, h in content.session_start_info.hparams.items():
                        hparams[k] = getattr(h, h.WhichOneof("kind"))
                elif v.HasField("simple_value"):
                    scalars[v.tag] = v.simple_value
    return scalars, hparams


def test_flatten_gives_dotted_scalars_and_leaves_out_none():
    config = {"method": "s2a", "sampling": {"n": 4, "top_p": None},
              "train": {"lora": {"rank": 8}, "learning_rate": 1e-3}, "tasks": ["a", "b"]}
    assert flatten(config) == {"method": "s2a", "sampling.n": 4, "train.lora.rank": 8,
                               "train.learning_rate": 1e-3, "tasks": '["a", "b"]'}


def test_results_and_hparams_are_added_beside_existing_events(tmp_path):
    results = {"rows": [{"system": "system1", "accuracy": 45.0, "tokens_per_answer": 5.1},
                        {"system": "distilled", "accuracy": 100.0, "tokens_per_answer": 3.9,
                         "split": "test"}],
               "validation": [{"system": "distilled", "split": "validation",
                               "accuracy": 75.0, "tokens_per_answer": 4.0}],
               "retention": {"bare": {"base": {"accuracy": 50.0, "tokens_per_answer": 2.0}}},
               "distill": {"kept": 99}}
    tb = tmp_path / "tb"
    tb.mkdir()
    mine = tb / "events.out.tfevents.1.user"
    mine.write_bytes(b"training curves")
    written = write_tb_results(tb, results, {"method": "s2a", "sampling.n": 4})
    assert mine.read_bytes() == b"training curves"  # never replaced
    assert written == eval_scalars(results) == {
        "eval/test/system1/accuracy": 45.0, "eval/test/system1/tokens_per_answer": 5.1,
        "eval/test/distilled/accuracy": 100.0, "eval/test/distilled/tokens_per_answer": 3.9,
        "eval/validation/distilled/accuracy": 75.0,
        "eval/validation/distilled/tokens_per_answer": 4.0,
        "retention/bare/base/accuracy": 50.0, "retention/bare/base/tokens_per_answer": 2.0,
        "distill/kept": 99.0}
    mine.unlink()  # not an events file: the reader would trip on it
    scalars, hparams = read_events(tb)
    assert scalars == {k: f32(v) for k, v in written.items()}
    assert hparams == {"method": "s2a", "sampling.n": 4.0}
    write_tb_results(tb, results, {"method": "s2a"})  # a rerun adds a file of its own
    assert len(list(tb.glob("events.out.tfevents.*"))) == 2


def f32(x: float) -> float:
    """`x` as TensorBoard stores a scalar (float32)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def check_run_tensorboard(run_dir: Path) -> None:
    """A finished demo or run dir's TensorBoard directory holds its results.json's figures
    and its hyperparameters."""
    results = json.loads((run_dir / "results.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())["config"]
    tb = run_dir / "train" / "tb" if (run_dir / "train").is_dir() else run_dir / "tb"
    scalars, hparams = read_events(tb)
    for row in results["rows"]:
        for k in ("accuracy", "tokens_per_answer"):
            assert scalars[f"eval/test/{row['system']}/{k}"] == f32(row[k])
    assert scalars["distill/kept"] == results["distill"]["kept"]
    assert hparams["method"] == results["method"]
    for key, value in flatten(config).items():
        assert hparams[key] == (float(value) if isinstance(value, int | float) else value)
