"""The Python API as a user meets it: one call from a path to weights, scalars where a user
would give one, presets, warnings, conversions, the README's examples, and types."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import classweights
from classweights import (
    ClassWeightsWarning,
    InputError,
    LabelSpec,
    class_weights,
    compute_weights,
)
from helpers import MASK_A, MASK_B, REPO, run, run_json, save_mask

PACKAGE = REPO / "classweights"


@pytest.fixture
def tiny(tmp_path) -> Path:
    save_mask(tmp_path / "a.png", MASK_A)
    save_mask(tmp_path / "b.png", MASK_B)
    return tmp_path


def test_class_weights_in_one_call_is_what_the_command_line_writes(tiny):
    weights = class_weights(str(tiny), ignore_index=255, method="inverse")
    # pixels [20, 8, 2], N = 30, K = 3: w_c = N / (K n_c)
    assert weights.tolist() == pytest.approx([30 / 60, 30 / 24, 30 / 6], rel=1e-15)
    doc = run_json("scan", tiny, "--ignore-index", "255", "--method", "inverse", "-q")
    assert weights.tolist() == pytest.approx(doc["weights"], rel=1e-6)
    assert weights.pos_weight == pytest.approx(doc["pos_weight"], rel=1e-6)


def test_scan_takes_one_str_or_pathlike_as_one_path(tiny):
    spec = LabelSpec(ignore_index=255)
    for path in (str(tiny), tiny):
        assert classweights.scan(path, spec).counts.pixels.tolist() == [20, 8, 2]
    assert classweights.scan([tiny / "a.png", str(tiny / "b.png")], spec).counts.files == 2
    assert classweights.scan(bytes(tiny), spec).counts.pixels.tolist() == [20, 8, 2]
    assert classweights.scan([bytes(tiny / "a.png")], spec).counts.files == 1
    with pytest.raises(TypeError, match=r"expected str, bytes or os\.PathLike object, not int"):
        classweights.scan([tiny, 3], spec)
    with pytest.raises(TypeError, match="workers must be a whole number, not '2'"):
        classweights.scan(tiny, spec, workers="2")
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        classweights.scan(tiny, spec, workers=0)


def test_the_scan_module_is_not_hidden_by_the_function():
    module = importlib.import_module("classweights.scan")
    assert classweights.scan is module
    assert module.local_executor is not None and callable(classweights.scan)
    alias = __import__("classweights.scan", fromlist=["scan"])
    assert alias is module


def test_no_module_imports_from_the_package_init():
    """``from . import name`` of a name __init__ defines would make a cycle through it."""
    # Python modules, and the compiled kernel (from its C source, whether or not it is built).
    modules = {p.stem for p in [*PACKAGE.glob("*.py"), *PACKAGE.glob("*.c")]}
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
                names = {alias.name for alias in node.names}
                assert names <= modules, (path.name, names - modules)


def test_label_spec_takes_scalars_lists_and_dicts():
    assert LabelSpec(ignore_index=255) == LabelSpec(ignore_index=(255,))
    assert LabelSpec(ignore_index=[255, 0]).ignore_index == (0, 255)
    assert LabelSpec(ignore_index=np.uint8(255)).ignore_index == (255,)
    assert LabelSpec(mapping={255: 1}).mapping == ((255, 1),)
    assert hash(LabelSpec(ignore_index=255)) == hash(LabelSpec(ignore_index=[255]))


@pytest.mark.parametrize(
    "settings, message",
    [
        # A str is a sequence: "255" was read as the values 2 and 5, "road" as four names.
        ({"ignore_index": "255"}, "ignore_index must be an integer or integers, not '255'"),
        ({"ignore_index": [255.0]}, "ignore_index must hold integers, not 255.0"),
        ({"mapping": "3:0"}, "mapping must be a mapping or (source, destination) pairs, not '3:0'"),
        ({"mapping": [(3, 0, 1)]}, "mapping must hold (source, destination) integer pairs"),
        ({"num_classes": 2.5}, "num_classes must be an integer, not 2.5"),
        ({"allowed_values": [0, "1"]}, "allowed_values must hold integers, not '1'"),
    ],
)
def test_label_settings_of_the_wrong_type_are_refused_not_guessed(tiny, settings, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        LabelSpec(**settings)
    if "allowed_values" not in settings:
        with pytest.raises(TypeError, match=re.escape(message)):
            classweights.count(str(tiny), **settings)


def test_a_generator_or_an_array_of_values_is_taken_whole():
    assert LabelSpec(ignore_index=(v for v in (255, 0))).ignore_index == (0, 255)
    assert LabelSpec(mapping=((s, 0) for s in (3, 4))).mapping == ((3, 0), (4, 0))
    assert LabelSpec(mapping=np.array([[4, 0], [3, 1]])).mapping == ((3, 1), (4, 0))


def test_names_and_spec_of_the_wrong_type_are_refused(tiny):
    with pytest.raises(TypeError, match="names must be a sequence of class names, not the str"):
        classweights.scan(str(tiny), names="road")
    with pytest.raises(TypeError, match="spec must be a LabelSpec, not dict"):
        classweights.scan(str(tiny), {"ignore_index": 255})
    with pytest.raises(TypeError, match="spec must be a LabelSpec, not dict"):
        classweights.scan(str(tiny), {})  # falsy: it was taken for no spec


@pytest.mark.parametrize(
    "clip, message",
    [
        ((5, 1), "clip's lower bound 5 is above its upper bound 1"),
        ((float("nan"), None), "clip bounds must be finite numbers or None, not nan"),
        ((None, float("inf")), "clip bounds must be finite numbers or None, not inf"),
    ],
)
def test_clip_bounds_the_command_line_refuses_are_refused_here_too(tiny, clip, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        class_weights(str(tiny), ignore_index=255, clip=clip)


def test_presets_from_python_in_any_case():
    spec = LabelSpec.from_preset("CamVid")
    assert (spec.num_classes, spec.ignore_index) == (11, (11,))
    assert LabelSpec.from_preset("voc", ignore_index=0).ignore_index == (0,)
    known = "cityscapes, cityscapes-trainids, voc"
    with pytest.raises(ValueError, match=f"unknown preset 'nope'; choose from {known}"):
        LabelSpec.from_preset("nope")


def test_class_weights_with_a_preset(tmp_path):
    # CamVid: 11 classes, 11 ignored. 3 pixels of class 0, 1 of class 3, 2 void.
    save_mask(tmp_path / "m.png", [[0, 0, 0], [3, 11, 11]])
    with pytest.warns(ClassWeightsWarning, match=r"classes \[1, 2, 4,"):
        weights = class_weights(tmp_path, preset="camvid", method="inverse")
    assert len(weights) == 11
    assert weights.tolist()[:4] == pytest.approx([4 / 6, 0, 0, 4 / 2])
    result = classweights.count(tmp_path, preset="CAMVID")
    assert result.names[0] == "Sky" and result.counts.ignored == 2


def test_warnings_reach_warnings_warn_with_the_category(tmp_path):
    save_mask(tmp_path / "m.jpg", [[0, 1], [2, 255]])
    with pytest.warns(ClassWeightsWarning) as caught:
        class_weights(tmp_path, num_classes=256)
    messages = [str(w.message) for w in caught]
    assert any("masks are JPEG: lossy compression" in m for m in messages), messages
    assert not any("--" in m for m in messages), messages  # parameters, not flags
    assert caught[0].filename == __file__  # attributed to the caller's line


def test_library_messages_name_parameters_and_the_cli_names_flags(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 1], [2, 5]])
    with pytest.raises(InputError) as error:
        class_weights(tmp_path, num_classes=3)
    assert "(num_classes=3)" in str(error.value)
    assert "ignore_index=5" in str(error.value) and "mapping={5: DST}" in str(error.value)
    assert "--" not in str(error.value)
    result = run("scan", tmp_path, "--num-classes", "3")
    assert result.exit_code == 3
    assert "(--num-classes 3)" in result.stderr
    assert "--ignore-index 5" in result.stderr and "--map 5:DST" in result.stderr
    assert "_" not in result.stderr.split(": ", 2)[2].replace("m.png", "")
    # A negative value is a flag's value too (it was left as ignore_index=-1).
    result = run("scan", tmp_path, "--map", "5:-1", "-q")
    assert "pass --ignore-index -1 if it marks pixels to leave out, or --map -1:DST" in (
        result.stderr
    )


def test_weights_convert_to_a_list_numpy_and_a_tensor(tiny, monkeypatch):
    weights = class_weights(tiny, ignore_index=255)
    as_list = weights.tolist()
    assert type(as_list) is list and all(type(w) is float for w in as_list)
    array = np.asarray(weights)
    assert array.dtype == np.float64 and array.tolist() == as_list
    assert np.asarray(weights, dtype=np.float32).dtype == np.float32
    copy = weights.numpy()
    copy[0] = -1
    assert weights.weights[0] != -1  # a copy: the frozen weights stay as derived

    made = []
    fake = types.ModuleType("torch")
    fake.float32 = "float32"
    fake.tensor = lambda values, dtype=None, device=None: made.append((values, dtype, device))
    monkeypatch.setitem(sys.modules, "torch", fake)
    weights.tensor()
    weights.tensor(device="cuda")
    assert made == [(as_list, "float32", None), (as_list, "float32", "cuda")]


def test_tensor_without_torch_says_so(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        class_weights(tiny, ignore_index=255).tensor()


def test_pos_weight_has_one_type_whatever_the_class_count(tmp_path):
    save_mask(tmp_path / "m.png", [[0, 0, 0, 1]])
    counts = classweights.scan(tmp_path).counts
    assert compute_weights(counts).pos_weight == [3.0]
    assert run_json("scan", tmp_path, "-q")["pos_weight"] == [3.0]


def python_examples(section: str) -> list[tuple[str, list[str]]]:
    """Return the ``python`` blocks of a README section: (code, the lines it prints), the
    printed lines written in the block as ``# `` comments."""
    readme = (REPO / "README.md").read_text()
    text = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [
        (
            "\n".join(line for line in block.splitlines() if not line.startswith("# ")),
            [line[2:] for line in block.splitlines() if line.startswith("# ")],
        )
        for block in blocks
    ]


def test_readme_python_examples_run_and_print_what_they_show(monkeypatch):
    monkeypatch.chdir(REPO)
    examples = python_examples("From Python")
    assert len(examples) >= 3
    namespace: dict = {}
    for code, expected in examples:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            exec(compile(code, "README.md", "exec"), namespace)
        assert out.getvalue().splitlines() == expected, code


def test_public_names_are_documented():
    for name in classweights.__all__:
        value = getattr(classweights, name)
        if callable(value) or isinstance(value, type):
            assert value.__doc__, name


def test_the_package_ships_py_typed_and_mypy_is_clean():
    mypy_api = pytest.importorskip("mypy.api")
    assert (PACKAGE / "py.typed").exists()
    out, err, status = mypy_api.run(["--config-file", str(REPO / "pyproject.toml"), str(PACKAGE)])
    assert status == 0, out + err


def test_class_weights_with_regions_paired_by_sample_id(tmp_path):
    save_mask(tmp_path / "labels" / "21_manual1.gif", [[0, 255], [255, 0]])
    save_mask(tmp_path / "fov" / "21_training_mask.gif", [[0, 1], [1, 1]])
    weights = class_weights(
        tmp_path / "labels", preset="drive", regions=tmp_path / "fov", method="inverse"
    )
    # inside the field of view: 1 background, 2 vessel; N = 3, K = 2
    assert weights.tolist() == pytest.approx([3 / 2, 3 / 4])
    counts = classweights.count(
        tmp_path / "labels", mapping={255: 1}, regions=tmp_path / "fov", pair_key=r"^(\d+)_"
    ).counts
    assert counts.pixels.tolist() == [1, 2]
