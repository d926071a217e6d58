"""The metric catalogue and the run specification own their concepts: every list elsewhere is
derived from them, an unknown name is an error, and no face retypes a default."""

import ast
import re
from pathlib import Path

import pytest

from engine.metrics import catalogue
from engine.metrics.catalogue import (
    DEFAULT_GROUPS,
    GROUP_METRICS,
    GROUPS,
    METRICS,
    UnknownMetric,
    higher_is_better,
    key_metrics,
    parse_groups,
    ranking_metric,
)
from engine.params import ParamError
from engine.spec import DEFAULTS, EvalConfig, RunSpec

ROOT = Path(__file__).resolve().parents[2]
NAME = r"(bg|ring|clip|prompt|vae)_\w+|kid|seconds|unet_calls|optimisation_steps|peak_memory_mb"


def test_set_level_and_proportion_metrics_have_their_directions():
    """The defect: kid, prompt_hit and prompt_precision had no entry, so the lowest KID was
    never marked best and prompt_hit sorted as 'lower is better'."""
    assert higher_is_better("kid") is False
    assert higher_is_better("prompt_hit") is True and higher_is_better("prompt_precision") is True
    assert METRICS["kid"].level == METRICS["prompt_precision"].level == "run"
    assert METRICS["prompt_hit"].summarised_as == "prompt_precision" and ranking_metric("prompt_hit") == "prompt_precision"


def test_an_unknown_metric_is_an_error_never_lower_is_better():
    with pytest.raises(UnknownMetric, match="unknown metric 'beauty'"):
        higher_is_better("beauty")
    assert issubclass(UnknownMetric, ParamError)  # the CLI turns it into one line and exit 2


def test_groups_partition_the_catalogue():
    names = [name for group in GROUP_METRICS.values() for name in group]
    assert sorted(names) == sorted(METRICS) and len(names) == len(set(names))
    assert set(GROUPS) == {"background", "clip", "precision", "kid"}  # cost is always recorded, never chosen
    for info in METRICS.values():
        assert info.description and info.direction in ("higher", "lower") and info.group in GROUP_METRICS


def test_the_default_evaluation_includes_the_researchs_own_metrics():
    """The defect: prompt-following precision (the research plan's metric) had to be asked for."""
    assert DEFAULT_GROUPS == ("background", "clip", "precision", "kid")
    assert EvalConfig().groups == DEFAULT_GROUPS == EvalConfig.for_model("tiny").groups
    assert parse_groups(None) == DEFAULT_GROUPS and parse_groups("") == ()
    assert parse_groups("kid,background,bg_mse") == ("background", "kid")  # catalogue order, metric -> group
    with pytest.raises(UnknownMetric, match="measured while generating"):
        parse_groups("seconds")


def test_key_columns_show_a_summarised_metric_once():
    assert key_metrics({"prompt_hit", "prompt_precision", "kid", "bg_mse"}) == ["bg_mse", "prompt_precision", "kid"]
    assert key_metrics({"prompt_hit", "bg_mse"}, first="prompt_hit") == ["prompt_hit", "bg_mse"]


def test_run_spec_defaults_and_validation():
    spec = RunSpec.build("blended")
    assert (spec.model, spec.steps, spec.guidance, spec.seed) == (DEFAULTS.model, DEFAULTS.steps, DEFAULTS.guidance,
                                                                 DEFAULTS.seed)
    assert spec.params["blend_start"] == 0.0 and spec.changed_params() == {}
    assert RunSpec.build("blended", {"blend_start": "0.25"}).changed_params() == {"blend_start": 0.25}
    for bad, message in (({"steps": 0}, "steps"), ({"guidance": float("inf")}, "guidance"),
                         ({"seed": 2**70}, "seed"), ({"seed": -1}, "seed")):
        with pytest.raises(ParamError, match=message):
            RunSpec.build("blended", **bad)
    assert RunSpec.build("blended").config_hash == RunSpec.build("blended", {"blend_start": 0.0}).config_hash
    assert RunSpec.build("blended").config_hash != RunSpec.build("blended", seed=1).config_hash


def test_a_parameter_given_twice_is_an_error():
    from engine.techniques import get_technique

    with pytest.raises(ParamError, match="given twice"):
        get_technique("blended").full_schema.split_assignments(["blend_start=0.1", "blend_start=0.2"],
                                                               technique="blended")


def _sources(folder: str):
    return [path for path in (ROOT / folder).rglob("*.py")]


def test_no_face_or_job_retypes_a_run_default():
    """Steps, guidance and model defaults live in engine.spec: the literal values and the old
    constant names appear nowhere in inpaint_tui/."""
    for path in _sources("inpaint_tui"):
        text = path.read_text()
        # 7.5 as a number of its own (a constant such as 2440587.5 is no guidance)
        assert not re.search(r"(?<![\d.])7\.5(?![\d])", text), path
        assert "DEFAULT_STEPS" not in text and "DEFAULT_GUIDANCE" not in text, path
        assert not re.search(r'Option\(\s*50\b|Option\(\s*"tiny"', text), path


def test_no_other_module_lists_metrics_or_groups():
    """The lists that drifted (GROUP_METRICS in evaluate, KEY_METRICS in present, the CLI's
    DEFAULT_METRICS string, METRICS in metrics/__init__) are derived, never assigned literally."""
    literal_lists = re.compile(r"^\s*(GROUPS|DEFAULT_GROUPS|GROUP_METRICS|KEY_METRICS|METRICS|DEFAULT_METRICS)\s*=\s*"
                               r"([(\[{]|[\"'](background|bg_mse))", re.M)
    for path in _sources("engine") + _sources("inpaint_tui"):
        if path.name == "catalogue.py":
            continue
        assert not literal_lists.search(path.read_text()), path


def test_catalogue_names_every_metric_the_code_writes():
    """Every metric name written as a string key by a metric module or the runner has an entry."""
    written = set()
    for path in _sources("engine/metrics") + [ROOT / "engine" / "runner.py", ROOT / "engine" / "techniques" / "registry.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                written |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
                            and re.fullmatch(NAME, k.value)}
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                value = node.slice.value
                if isinstance(value, str) and re.fullmatch(r"(bg|ring|clip|prompt)_\w+|kid|seconds", value):
                    written.add(value)
    assert written and written <= set(METRICS), written - set(METRICS)
    assert catalogue.DEFAULT_RANKING_METRIC in METRICS
