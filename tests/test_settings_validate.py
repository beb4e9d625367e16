"""Every setting is checked in one place (Settings.validate), the same way whether it comes
from the command line, a job file or a program: a wrong value is exit 2 naming the option
or job key and what to give, before any work starts (issue 9, points 3 and 4)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from engine.cli import job_keys, main
from engine.defaults import Settings, SettingError, StyleImage


def stylize(capsys, tmp_path, *args):
    code = main(["stylize", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--progress", "none", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, named", [
    (["--iterations", "0"], "--iterations is 0"),
    (["--iterations", "-3"], "--iterations is -3"),
    (["--first-iterations", "0"], "--first-iterations is 0"),
    (["--height", "-5"], "--height is -5"),
    (["--height", "1000000"], "--height is 1000000"),
    (["--height", "4"], "--height is 4"),
    (["--style-strength", "-1"], "--style-strength is -1"),
    (["--temporal-strength", "nan"], "--temporal-strength is NaN"),
    (["--frames", "5:2"], "--frames is [5, 2]"),
    (["--device", "foo"], "--device is \"foo\""),
    (["--style", "a.jpg:-1"], "--style is a.jpg with weight -1"),
])
def test_nonsense_options_are_refused_naming_the_option(capsys, tmp_path, args, named):
    code, err = stylize(capsys, tmp_path, *args)
    assert code == 2
    assert named in err and ("give" in err or "choose" in err), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists(), "refused before anything is created"


def test_frames_with_one_end_is_refused_with_the_fix(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["stylize", str(tmp_path), "--out", str(tmp_path / "o"), "--frames", "2:"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'2:'" in err and "2:48" in err


@pytest.mark.parametrize("job, says", [
    ([1, 2], "holds a JSON list; it must be one object"),
    ({"iterations": "5"}, '"iterations" is "5": give a whole number'),
    ({"styles": "painting.jpg"}, '"styles" is "painting.jpg": give a list of styles'),
    ({"styles": [{"path": "a.jpg", "weight": "0.5"}]}, 'give each style as {"path"'),
    ({"iteratons": 5}, 'unknown key "iteratons" (did you mean "iterations"?)'),
    ({"style_strenght": 2}, 'did you mean "style_strength"?'),
    ({"frames": [1]}, '"frames" is [1]: give a list of 2 whole numbers'),
    ({"height": -3}, '"height" is -3: give 0'),
    ({"use_depth": "no"}, '"use_depth" is "no": give true or false'),
    ({"out": 5}, '"out" is 5: give a text in quotes'),
])
def test_job_files_with_wrong_types_or_keys_are_refused(capsys, tmp_path, job, says):
    path = tmp_path / "job.json"
    if isinstance(job, dict):
        job = {"input": str(tmp_path / "in"), "out": str(tmp_path / "out"), **job}
    path.write_text(json.dumps(job))
    code = main(["stylize", "--job", str(path), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(path) in err and says in err, err
    assert "Traceback" not in err


def test_an_option_overrides_a_bad_job_value_and_is_named_when_bad(capsys, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"input": "x", "out": "y", "iterations": 0}))
    code = main(["stylize", "--job", str(path), "--iterations", "-1", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "--iterations is -1" in err


def test_every_settings_field_is_a_job_key_so_new_fields_count():
    keys = set(job_keys())
    assert {f.name for f in dataclasses.fields(Settings)} <= keys
    assert {"input", "out", "styles", "frames", "allow_download"} <= keys


def test_validate_is_the_same_for_programs():
    Settings(styles=[StyleImage("a.jpg")]).validate()
    for bad in ({"iterations": 0}, {"height": -1}, {"tv_weight": float("inf")},
                {"long_term": (0, 1)}, {"optimizer": "sgd"}, {"flow": "magic"},
                {"precision": "fp8"}, {"use_depth": 1}, {"styles": [StyleImage("a.jpg", 0.0)]},
                {"network_tile": 8}):
        with pytest.raises(SettingError) as err:
            Settings(**bad).validate()
        assert err.value.key == next(iter(bad))


def test_the_add_on_job_file_is_valid(tmp_path):
    """The job the add-on writes (addon/job.py) passes the engine's checks unchanged."""
    import sys

    import addon_helpers  # noqa: F401  (hermetic Blender, repo on sys.path)
    from addon.job import JobSpec, StyleRef
    spec = JobSpec(styles=[StyleRef(str(tmp_path / "a.jpg"), 1.0)], out_dir=str(tmp_path),
                   frame_start=1, frame_end=3, python=sys.executable)
    from engine.cli import read_job
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec.to_job_dict()))
    assert read_job(str(path))["frames"] == [1, 3]
