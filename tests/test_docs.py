"""The docs: links resolve, the generated references cover the code, config fields are commented.

The CLI, config and code-layout pages are generated at build time by docs/hooks/reference.py
(an MkDocs hook); these tests run its generators without MkDocs. The site build itself
(`mkdocs build --strict`, which also checks the HTML's links and that nothing loads from the
network, docs/hooks/site_check.py) is a step of .ci/run.
"""

import argparse
import dataclasses
import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}",
                                                  DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _hook("reference")
GENERATED = {reference.CLI_PAGE, reference.CONFIG_PAGE, reference.MODULES_PAGE}


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md")
                                        if "hooks" not in p.relative_to(DOCS).parts)]


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """The anchor MkDocs' toc (and, for these headings, GitHub) gives a heading."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def _links(path: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)",
                      _prose(path.read_text(encoding="utf-8")))


def test_relative_links_resolve():
    broken = []
    for md in _markdown_files():
        for link in _links(md):
            if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
                continue
            target, _, anchor = link.partition("#")
            path = (md.parent / target).resolve() if target else md
            page = path.relative_to(DOCS).as_posix() if path.is_relative_to(DOCS) else None
            where = f"{md.relative_to(ROOT)}: ({link})"
            if page in GENERATED:
                continue
            if not path.exists():
                broken.append(f"{where}: no file {path.relative_to(ROOT)}")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                broken.append(f"{where}: no heading with anchor #{anchor}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_a_page_missing_from_the_nav_goes_under_more(tmp_path):
    """mkdocs.yml's nav places the pages; one it does not list yet (a page that landed with
    other work) is still shown, under "More", instead of failing the strict build."""
    for page in ("index.md", "guide/a.md", "guide/b.md", "hooks/x.md"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("# x\n", encoding="utf-8")
    nav = [{"Home": "index.md"}, {"Guides": [{"A": "guide/a.md"}]}]
    config = reference.on_config({"docs_dir": str(tmp_path), "nav": nav})
    assert config["nav"][-1] == {"More": ["guide/b.md"]}
    real = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    assert {"index.md", "real_results.md", "plan.md", "reference/cli.md"} <= \
        reference._nav_pages(real)


def _parser() -> argparse.ArgumentParser:
    from s2jax.cli import _parser

    return _parser()


def test_cli_reference_covers_every_command_and_option():
    page = reference.cli_reference()
    commands = list(reference.walk_commands(_parser()))
    names = {name for name, _, _ in commands}
    assert {"run", "demo", "train", "report", "plan", "toy pretrain", "fetch-models"} <= names
    for name, _, sub in commands:
        assert f"`s2jax {name}`" in page, f"no section for s2jax {name}"
        section = re.split(r"\n#+ `s2jax", page.split(f"`s2jax {name}`\n", 1)[1])[0]
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(
                    action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            for flag in action.option_strings or [action.metavar or action.dest]:
                assert flag in section, f"s2jax {name}: {flag} missing from its section"


def test_cli_reference_shows_each_flags_help_with_defaults():
    page = reference.cli_reference()
    train = page.split("`s2jax train`\n", 1)[1].split("\n## ", 1)[0]
    # the TrainConfig field comment, through add_field_flags, with its default
    assert "peak learning rate, reached after warmup (default: 0.0001)" in train
    assert "<code>--lora-rank LORA_RANK</code>" in train


def test_config_reference_covers_every_field_of_every_section():
    from s2jax.models.lora_config import LoraConfig
    from s2jax.run.config import DataConfig, ExperimentConfig
    from s2jax.train.config import TrainConfig

    page = reference.config_reference()
    classes = reference.documented_configs()
    assert {ExperimentConfig, DataConfig, TrainConfig, LoraConfig} <= set(classes)
    for cls in classes:
        section = page.split(f"## `{cls.__name__}`\n", 1)[1].split("\n## ", 1)[0]
        for field in dataclasses.fields(cls):
            assert f"| <code>{field.name}</code> |" in section, \
                f"{cls.__name__}.{field.name} missing from the config reference"
    row = next(line for line in page.splitlines() if line.startswith("| <code>rank</code>"))
    assert "0 trains every weight (full fine-tuning)" in row


def test_documented_config_fields_have_comments():
    from s2jax.core.overrides import field_comments

    missing = [f"{cls.__module__}.{cls.__name__}.{name}"
               for cls in reference.documented_configs()
               for name, comment in field_comments(cls).items() if not comment]
    assert not missing, "config fields without a comment (the docs and --help show it):\n" + \
        "\n".join(missing)


def test_modules_reference_names_every_module():
    page = reference.modules_reference()
    for path in (ROOT / "s2jax").rglob("*.py"):
        if path.name != "__init__.py" and "__pycache__" not in path.parts:
            assert f"<code>{path.name}</code>" in page or \
                f"<code>s2jax/{path.name}</code>" in page, f"{path} missing"


def test_site_check_finds_broken_links_and_network_assets(tmp_path):
    site_check = _hook("site_check")
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "a.html").write_text(
        '<h2 id="here">x</h2><a href="#here">ok</a> <a href="../index.html#top">ok</a>'
        '<a href="b.html">missing page</a> <a href="../index.html#nowhere">missing anchor</a>'
        '<a href="https://example.org/">a link out is fine</a>'
        '<script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="../assets/style.css">', encoding="utf-8")
    (tmp_path / "index.html").write_text('<p id="top"><img src="//fonts.example.org/f.png">',
                                         encoding="utf-8")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "style.css").write_text("", encoding="utf-8")
    found = site_check.problems(tmp_path)
    assert len(found) == 4, found
    assert any("b.html: no such file" in f for f in found)
    assert any("no element with id 'nowhere'" in f for f in found)
    assert any("loads https://cdn.example.org/x.js" in f for f in found)
    assert any("loads //fonts.example.org/f.png" in f for f in found)
