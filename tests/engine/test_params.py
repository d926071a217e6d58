import math

import pytest

from engine.params import Param, ParamError, ParamSchema
from engine.techniques import get_technique, technique_names

SCHEMA = ParamSchema(
    (
        Param("steps_back", "int", 2, "an int", minimum=0, maximum=10),
        Param("fraction", "float", 0.5, "a float", minimum=0.0, maximum=1.0),
        Param("t_bg", "float", 50.0, "may be infinite", minimum=0.0, maximum=math.inf),
        Param("flag", "bool", False, "a bool"),
        Param("mode", "choice", "paste", "a choice", choices=("none", "paste")),
    )
)


def test_defaults_and_parsing():
    values = SCHEMA.parse_assignments(["steps_back=3", "fraction=0.25", "t_bg=inf", "flag=yes", "mode=none"], technique="x")
    assert values == {"steps_back": 3, "fraction": 0.25, "t_bg": math.inf, "flag": True, "mode": "none"}
    assert SCHEMA.parse_assignments([], technique="x") == SCHEMA.defaults()


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("nope=1", "unknown parameter 'nope' .*known: steps_back, fraction"),
        ("steps_back=2.5", "parameter 'steps_back': expected an integer, got '2.5'"),
        ("steps_back=11", "11 is above the maximum 10"),
        ("fraction=-0.1", "-0.1 is below the minimum 0"),
        ("fraction=abc", "expected a number, got 'abc'"),
        ("fraction=nan", "NaN is not allowed"),
        ("flag=maybe", "expected true/false"),
        ("mode=feather", "'feather' is not one of none, paste"),
        ("steps_back", "expected key=value"),
        ("=3", "expected key=value"),
    ],
)
def test_bad_assignments_name_technique_and_parameter(assignment, message):
    with pytest.raises(ParamError, match=message) as caught:
        SCHEMA.parse_assignments([assignment], technique="mytech")
    assert str(caught.value).startswith("mytech: ")


def test_typed_values_are_validated_too():
    with pytest.raises(ParamError, match="expected a number"):
        SCHEMA.resolve({"fraction": True}, technique="x")
    assert SCHEMA.resolve({"steps_back": 4.0}, technique="x")["steps_back"] == 4


def test_every_registered_technique_has_a_valid_documented_schema():
    assert {"vanilla", "blended"} <= set(technique_names())
    for name in technique_names():
        technique = get_technique(name)
        described = technique.to_dict()
        assert described["name"] == name and described["summary"] and described["unet"] in ("inpaint", "txt2img")
        for param in technique.schema:
            assert param.help, f"{name}.{param.name} has no help text"
            param.validate(param.default, technique=name)


def test_unknown_technique():
    with pytest.raises(ParamError, match=r"unknown technique 'magic' \(known: .*blended"):
        get_technique("magic")


def test_schema_dict_is_json_safe():
    import json

    json.dumps([p.to_dict() for p in SCHEMA], allow_nan=False)
