"""scenario + data: the format, defaults, and every bad-input case (without pytest or Keras)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_convergence.errors import Problem, ScenarioError
from pytest_convergence.limits import DEFAULTS, Limits
from pytest_convergence.scenario import Scenario, load_file

BASE = """\
defaults:
  data: {x: {arange: [1, 21]}, y: "0.5 * x"}
  model: [{Dense: {units: 1}}]
  loss: mean_squared_error
  optimizer: sgd
  epochs: 5
scenarios:
"""


def load(tmp_path: Path, text: str) -> list[Scenario]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_file(path, display="s.yaml")


def problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as err:
        load(tmp_path, text)
    return err.value.problems


def only(tmp_path: Path, text: str) -> Problem:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


def test_defaults_merge_under_each_scenario(tmp_path: Path) -> None:
    (a, b) = load(
        tmp_path,
        BASE
        + """\
  - name: a
    expect: {diverges: {within_epochs: 3}}
  - name: b
    data: {x: [1, 2, 3]}
    optimizer: {name: sgd, learning_rate: 1.0e-4}
    seeds: 3
    expect: {converges: {loss_below: 0.1}}
""",
    )
    assert a.x.shape == (20, 1) and a.x.dtype == np.float32
    assert a.spec.optimizer.name == "sgd" and a.spec.optimizer.kwargs == {}
    assert a.seeds == (0,) and a.line == 8
    # mappings merge: b keeps the default y expression with its own x
    np.testing.assert_allclose(b.y[:, 0], [0.5, 1.0, 1.5])
    assert b.spec.optimizer.kwargs == {"learning_rate": 1e-4}
    assert b.seeds == (0, 1, 2)


def test_seed_in_defaults_is_replaced_by_seeds_in_a_scenario(tmp_path: Path) -> None:
    (a,) = load(
        tmp_path,
        BASE.replace("  epochs: 5\n", "  epochs: 5\n  seed: 7\n")
        + """\
  - name: a
    seeds: [1, 4]
    expect: {diverges: {within_epochs: 3}}
""",
    )
    assert a.seeds == (1, 4)


def test_yaml_1_2_floats_such_as_1e_4_are_numbers(tmp_path: Path) -> None:
    (a,) = load(
        tmp_path,
        BASE
        + """\
  - name: a
    optimizer: {name: sgd, learning_rate: 1e-4}
    expect: {converges: {loss_below: 5E-3}}
""",
    )
    assert a.spec.optimizer.kwargs == {"learning_rate": 1e-4}
    assert a.spec.expect.converges is not None and a.spec.expect.converges.loss_below == 5e-3


def test_optimizer_and_data_forms_are_replaced_not_merged(tmp_path: Path) -> None:
    (a,) = load(
        tmp_path,
        BASE.replace("optimizer: sgd", "optimizer: {name: sgd, momentum: 0.9}").replace(
            "loss: mean_squared_error", "loss: {name: SparseCategoricalCrossentropy, from_logits: true}"
        )
        + """\
  - name: a
    optimizer: {name: adam}
    loss: {name: MeanSquaredError}
    data: {x: {linspace: [0, 1, 3]}}
    expect: {converges: {loss_below: 0.1}}
""",
    )
    assert a.spec.optimizer.kwargs == {}
    assert a.spec.loss.name == "MeanSquaredError" and a.spec.loss.kwargs == {}  # no from_logits carried over
    assert a.x[:, 0].tolist() == [0, 0.5, 1]


def test_data_forms(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,t\n1,2,3\n4,5,9\n\n")
    np.savez(tmp_path / "d.npz", x=np.arange(4.0), y=np.arange(4.0) * 2)
    lin, multi, csv, npz, noisy = load(
        tmp_path,
        BASE
        + """\
  - name: lin
    data: {x: {linspace: [0, 1, 5]}}
    expect: {diverges: {within_epochs: 3}}
  - name: multi
    data: {x: [[1, 2], [3, 4]], y: "x0 + 10 * x1"}
    expect: {diverges: {within_epochs: 3}}
  - name: csv
    data: {file: d.csv, x_columns: [a, b], y_columns: [t]}
    expect: {diverges: {within_epochs: 3}}
  - name: npz
    data: {file: d.npz}
    expect: {diverges: {within_epochs: 3}}
  - name: noisy
    data: {noise: {std: 0.1}}
    expect: {diverges: {within_epochs: 3}}
""",
    )
    np.testing.assert_allclose(lin.x[:, 0], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(multi.y[:, 0], [21, 43])
    assert csv.x.tolist() == [[1, 2], [4, 5]] and csv.y.tolist() == [[3], [9]]
    assert npz.x.shape == (4, 1) and npz.y[:, 0].tolist() == [0, 2, 4, 6]
    residual = noisy.y[:, 0] - 0.5 * noisy.x[:, 0]
    assert 0.02 < residual.std() < 0.3  # seeded noise, the same on every load
    np.testing.assert_array_equal(
        noisy.y,
        load(
            tmp_path,
            BASE
            + """\
  - name: noisy
    data: {noise: {std: 0.1}}
    expect: {diverges: {within_epochs: 3}}
""",
        )[0].y,
    )


@pytest.mark.parametrize(
    ("scenario", "line", "key", "message"),
    [
        pytest.param(
            "  - name: a\n    optimiser: sgd\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].optimiser",
            "unknown key 'optimiser'; did you mean 'optimizer'?",
            id="unknown-key",
        ),
        pytest.param(
            "  - name: a\n    expect: {diverge: {within_epochs: 3}}\n",
            9,
            "scenarios[0].expect.diverge",
            "did you mean 'diverges'? Allowed here: converges,",
            id="unknown-expectation",
        ),
        pytest.param(
            "  - name: a\n    epochs: five\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].epochs",
            "expected a whole number, got 'five'; allowed: 1 … 1000000",
            id="wrong-type",
        ),
        pytest.param(
            "  - name: a\n    epochs: 0\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].epochs",
            "greater than or equal to 1, got 0",
            id="out-of-range",
        ),
        pytest.param(
            "  - name: a\n    description: x\n",
            8,
            "scenarios[0].expect",
            "missing required key",
            id="missing-key",
        ),
        pytest.param(
            "  - name: a\n    expect: {}\n",
            9,
            "scenarios[0].expect",
            "at least one of",
            id="empty-expect",
        ),
        pytest.param(
            "  - name: a b\n    expect: {diverges: {within_epochs: 3}}\n",
            8,
            "scenarios[0].name",
            "no spaces",
            id="bad-name",
        ),
        pytest.param(
            "  - name: a\n    model: not a factory\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].model",
            "'package.module:function'",
            id="bad-factory-form",
        ),
        pytest.param(
            "  - name: a\n    model: [{Dense: {units: 1}, Flatten: {}}]\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].model[0]",
            "a layer is written as {ClassName",
            id="bad-layer-form",
        ),
        pytest.param(
            "  - name: a\n    optimizer: {name: sgd, learning_rate: {class_name: X}}\n"
            "    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].optimizer.learning_rate",
            "learning_rate is a number, or a schedule written {ExponentialDecay:",  # not Keras's {class_name: …}
            id="mapping-keyword-value",
        ),
        pytest.param(
            "  - name: a\n    seed: 1\n    seeds: 2\n    expect: {diverges: {within_epochs: 3}}\n",
            8,
            "scenarios[0]",
            "either seed or seeds",
            id="seed-and-seeds",
        ),
        pytest.param(
            "  - name: a\n    seeds: [" + ", ".join(["1"] * 1001) + "]\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].seeds",
            "seeds: a list of at most 1000 seeds, got 1001",
            id="seed-list-too-long",
        ),
        pytest.param(
            "  - name: a\n    expect: {predict: {x: 1, y: 2}}\n",
            9,
            "scenarios[0].expect.predict",
            "give a tolerance",
            id="predict-without-tolerance",
        ),
        pytest.param(
            "  - name: a\n    expect: {stable: {rel_tol: 0.1}}\n",
            9,
            "scenarios[0].expect.stable",
            "give lr_below_bound (true or false), bound (a learning rate), or both",
            id="stable-without-a-claim",
        ),
        pytest.param(
            "  - name: a\n    fit: {input: arrays}\n    expect: {converges: {loss_below: 1}}\n",
            9,
            "scenarios[0].fit.input",
            "Input should be 'auto', 'numpy' or 'dataset'",
            id="fit-input",
        ),
        pytest.param(
            "  - name: a\n    expect: {predict: {x: [1, 2], y: [2], abs_tol: 1}}\n",
            9,
            "scenarios[0].expect.predict",
            "x gives 2 points but y gives 1",
            id="predict-length",
        ),
        pytest.param(
            "  - name: a\n    expect: {predict: {x: [[1, 2], [3]], y: [2, 3], abs_tol: 1}}\n",
            9,
            "scenarios[0].expect.predict.x",
            "x rows have different lengths [1, 2]; each sample needs the same count; got [[1, 2], [3]]",
            id="predict-ragged-rows",  # the rules of data.x, said the same way
        ),
        pytest.param(
            "  - name: a\n    expect: {predict: {x: '25', y: 1, abs_tol: 1}}\n",
            9,
            "scenarios[0].expect.predict.x",
            "x must be a number (one point) or a list as data.x is written; got '25'",
            id="predict-string",
        ),
        pytest.param(
            "  - name: a\n    expect: {predict: {x: 25, y: .nan, abs_tol: 1}}\n",
            9,
            "scenarios[0].expect.predict.y",
            "y must be finite, got nan",
            id="predict-nan",
        ),
        pytest.param(
            "  - name: a\n    expect: {metric: {name: accuracy, above: 0.9}}\n",
            8,
            "scenarios[0]",
            "not compiled: add it to metrics",
            id="metric-not-compiled",
        ),
        pytest.param(
            "  - name: a\n    data: {y: [1, 2]}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.y",
            "x has 20 samples but y has 2",
            id="length-mismatch",
        ),
        pytest.param(
            "  - name: a\n    data: {x: [1, .nan], y: [1, 2]}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.x",
            "non-finite value(s) (NaN or inf), first at sample 1",
            id="nan-in-data",
        ),
        pytest.param(
            "  - name: a\n    data: {y: 'log(x - 1)'}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.y",
            "non-finite value(s)",
            id="inf-from-expression",
        ),
        pytest.param(
            "  - name: a\n    data: {y: \"__import__('os').getcwd()\"}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.y",
            "is not allowed. Allowed:",
            id="unsafe-expression",
        ),
        pytest.param(
            "  - name: a\n    data: {y: 'x.real'}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.y",
            "attribute access",
            id="attribute-expression",
        ),
        pytest.param(
            "  - name: a\n    data: {x: {range: [1, 3]}}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.x",
            "{linspace: [start, stop, num]}",
            id="bad-x-form",
        ),
        pytest.param(
            "  - name: a\n    data: {x: {arange: [1, 3, 0]}}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.x.arange",
            "step must not be 0",
            id="zero-step",
        ),
        pytest.param(
            "  - name: a\n    data: {x: {linspace: [0, 1, 1e9]}}\n    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.x.linspace",
            "from 1 to 1000000",
            id="too-much-data",
        ),
        pytest.param(
            "  - name: a\n    data: {file: missing.csv, x_columns: [a], y_columns: [b]}\n"
            "    expect: {diverges: {within_epochs: 3}}\n",
            9,
            "scenarios[0].data.file",
            "no such file",
            id="missing-file",
        ),
    ],
)
def test_bad_scenario_is_located(tmp_path: Path, scenario: str, line: int, key: str, message: str) -> None:
    problem = only(tmp_path, BASE + scenario)
    assert (problem.path, problem.line, problem.key) == ("s.yaml", line, key), problem
    assert message in problem.message, problem.message


def test_missing_csv_column_lists_the_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    problem = only(
        tmp_path,
        """\
scenarios:
  - name: a
    data: {file: d.csv, x_columns: [a], y_columns: [c]}
    model: [Dense: {units: 1}]
    loss: mse
    optimizer: sgd
    epochs: 1
    expect: {diverges: {within_epochs: 3}}
""",
    )
    assert problem.key == "scenarios[0].data.y_columns[0]"
    assert "no column 'c' in d.csv; its columns are ['a', 'b']" in problem.message


def test_error_in_defaults_points_at_the_defaults_line_once(tmp_path: Path) -> None:
    problem = only(
        tmp_path,
        BASE.replace("epochs: 5", "epochs: -1")
        + """\
  - name: a
    expect: {diverges: {within_epochs: 3}}
  - name: b
    expect: {diverges: {within_epochs: 3}}
""",
    )
    assert (problem.line, problem.key) == (6, "defaults.epochs")


def test_duplicate_scenario_names(tmp_path: Path) -> None:
    problem = only(
        tmp_path,
        BASE
        + """\
  - name: a
    expect: {diverges: {within_epochs: 3}}
  - name: a
    expect: {diverges: {within_epochs: 3}}
""",
    )
    assert (problem.line, problem.key) == (10, "scenarios[1].name")
    assert "duplicate scenario name 'a' (first used on line 8)" in problem.message


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        BASE
        + """\
  - name: a
    epochz: 3
    expect: {diverges: {within_epochs: 3}}
  - name: b
    expect: {converges: {loss_below: -1}}
""",
    )
    assert [(p.line, p.key) for p in found] == [
        (9, "scenarios[0].epochz"),
        (12, "scenarios[1].expect.converges.loss_below"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "got an empty file"),
        ("- a\n- b\n", 1, "got a list"),
        ("just text\n", 1, "got the value 'just text'"),
        ("scenarios: []\n", 1, "must be a non-empty list"),
        ("defaults: {}\nscenarioz: []\n", 2, "unknown key 'scenarioz'; did you mean 'scenarios'?"),
        ("defaults: {name: x}\nscenarios: [{name: a}]\n", 1, "each scenario names itself"),
        ("scenarios:\n  - just a string\n", 2, "a scenario must be a mapping"),
        ("scenarios:\n  - {name: a, name: b}\n", 2, "duplicate key"),
        ("scenarios: [\n", 2, "not valid YAML"),
    ],
)
def test_bad_file_structure(tmp_path: Path, text: str, line: int, message: str) -> None:
    found = problems(tmp_path, text)
    assert any(p.line == line and message in p.message for p in found), found


@pytest.mark.parametrize(
    "data",
    [
        "{x: {arange: [0, 1.0e+300, 1.0e-300]}}",
        "{x: {linspace: [0, 1, .inf]}}",
        "{x: {linspace: [0, 1, .nan]}}",
        "{x: [1, " + "1" + "0" * 320 + "]}",
        "{x: [1, 2], y: [1, 1e999]}",
    ],
)
def test_extreme_numbers_are_located_errors(tmp_path: Path, data: str) -> None:
    problem = only(tmp_path, BASE + f"  - name: a\n    data: {data}\n    expect: {{diverges: {{within_epochs: 3}}}}\n")
    assert problem.line == 9 and problem.key.startswith("scenarios[0].data.")


def file_problem(root: Path, file: str, columns: bool = True, limits: Limits = DEFAULTS) -> Problem:
    """The one problem of a scenario in root/project/s.yaml whose data is `file`, read with root/project as the
    run's root directory."""
    project = root / "project"
    project.mkdir(exist_ok=True)
    cols = ", x_columns: [a], y_columns: [b]" if columns else ""
    path = project / "s.yaml"
    path.write_text(
        BASE + f"  - name: a\n    data: {{file: '{file}'{cols}}}\n    expect: {{diverges: {{within_epochs: 3}}}}\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_file(path, display="s.yaml", root=project, limits=limits)
    (problem,) = err.value.problems
    assert (problem.line, problem.key) == (9, "scenarios[0].data.file"), problem
    return problem


def test_data_files_stay_inside_the_root_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("SECRET_TOKEN=abc123,b\n1,2\n")
    outside = "must stay inside"
    assert outside in file_problem(tmp_path, "../secret.csv").message
    assert outside in file_problem(tmp_path, str(tmp_path / "secret.csv")).message
    # a path outside that does not exist gets the same answer: nothing tells whether it exists
    assert outside in file_problem(tmp_path, "../nothing-here.csv").message
    (tmp_path / "project" / "inside.csv").symlink_to(tmp_path / "secret.csv")
    problem = file_problem(tmp_path, "inside.csv")
    assert outside in problem.message and "SECRET" not in problem.message


def test_data_file_contents_are_never_echoed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "d.csv").write_text("a,b\n1,2\nSECRET_TOKEN=abc123,3\n")
    problem = file_problem(tmp_path, "d.csv")
    assert problem.message == "d.csv, row 3: a wanted column is missing or not a number"
    (project / "nan.csv").write_text("a,b\n1,2\nnan,3\n")
    assert "non-finite value(s)" in file_problem(tmp_path, "nan.csv").message


def test_data_files_that_are_not_data(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "bin.csv").write_bytes(bytes(range(256)) * 4)
    assert "bin.csv is not UTF-8 text" in file_problem(tmp_path, "bin.csv").message
    np.savez(project / "scalar.npz", x=np.float64(1.0), y=np.arange(3.0))
    assert "array x has shape (); one row per sample" in file_problem(tmp_path, "scalar.npz", columns=False).message
    np.savez(project / "empty.npz", x=np.zeros((0, 2)), y=np.zeros(0))
    assert "array x has shape (0, 2)" in file_problem(tmp_path, "empty.npz", columns=False).message
    np.savez(project / "words.npz", x=np.array(["a", "b"]), y=np.arange(2.0))
    assert "array x holds str" in file_problem(tmp_path, "words.npz", columns=False).message
    (project / "fake.npz").write_text("not a zip")
    assert "cannot read fake.npz as .npz" in file_problem(tmp_path, "fake.npz", columns=False).message


def test_data_files_are_bounded_before_they_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # 2 000 000 zeros compress to a few kilobytes: the header says the shape before anything is loaded
    np.savez_compressed(project / "bomb.npz", x=np.zeros(2_000_000, dtype=np.float32), y=np.zeros(2))
    assert (project / "bomb.npz").stat().st_size < 100_000
    message = file_problem(tmp_path, "bomb.npz", columns=False).message
    assert "array x has shape (2000000,); at most 1000000 samples" in message
    (project / "big.csv").write_text("a,b\n" + "1,2\n" * 1000)
    capped = file_problem(tmp_path, "big.csv", limits=Limits(data_file_bytes=1000)).message
    assert "big.csv has 4004 bytes; data files of at most 1000 are read" in capped
    assert "--convergence-limit data_file_bytes=N" in capped
    monkeypatch.setattr("pytest_convergence.data.MAX_SAMPLES", 500)
    assert "big.csv has more than 500 rows" in file_problem(tmp_path, "big.csv").message


def test_npz_reads_the_members_it_checked(tmp_path: Path) -> None:
    """An .npz whose small x.npy passes the header check while a member named plain `x` (what np.load's ["x"] picks)
    holds a huge array: only x.npy and y.npy are read, from the headers that were checked. Members without .npy: a
    located problem, not a KeyError."""
    import zipfile

    project = tmp_path / "project"
    project.mkdir()
    with zipfile.ZipFile(project / "two.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("x.npy", np.ones(3)), ("y.npy", np.ones(3)), ("x", np.zeros((2_000_000, 2)))):
            with archive.open(name, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array)
    (sample,) = load_file(_data_file(project, "two.npz"), root=project)
    assert sample.x.shape == (3, 1)
    # a header numpy accepts with a negative dimension: the product of the shape is negative, and a read of a
    # negative count would decompress the whole member
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (1, -1)
    with zipfile.ZipFile(project / "negative.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("x.npy", "y.npy"):
            with archive.open(name, "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                member.write(b"\0" * 8_000_000)
    message = file_problem(tmp_path, "negative.npz", columns=False).message
    assert message == "negative.npz: array x has shape (1, -1); one row per sample is needed"
    with zipfile.ZipFile(project / "bare.npz", "w") as archive:
        for name in ("x", "y"):
            with archive.open(name, "w") as member:
                np.lib.format.write_array(member, np.ones(3))
    message = file_problem(tmp_path, "bare.npz", columns=False).message
    assert message == "bare.npz lacks the array(s) ['x.npy', 'y.npy']; it holds 'x', 'y'"


def test_a_data_file_is_checked_as_it_was_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file swapped for a symlink to one outside the root between the path check and the open: the file that
    was opened is refused, not read."""
    project, outside = tmp_path / "project", tmp_path / "secret.csv"
    project.mkdir()
    outside.write_text("a,b\n1,2\n")
    (project / "d.csv").write_text("a,b\n3,4\n")
    real_open = Path.open

    def swapped(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "d.csv":  # the race, won by the attacker every time
            self.unlink()
            self.symlink_to(outside)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", swapped)
    message = file_problem(tmp_path, "d.csv").message
    assert message.startswith("data.file 'd.csv' changed while it was opened; it must stay inside")


def test_a_scenario_file_is_checked_as_it_was_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race for the scenario file itself (the check data files share): the file opened resolves outside the
    root, so it is refused before a byte of it is read."""
    project, outside = tmp_path / "project", tmp_path / "secret.yaml"
    project.mkdir()
    outside.write_text(BASE + "  - name: a\n    expect: {diverges: {within_epochs: 3}}\n")
    (project / "s.yaml").write_text(outside.read_text())
    real_open = Path.open

    def swapped(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "s.yaml":
            self.unlink()
            self.symlink_to(outside)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", swapped)
    with pytest.raises(ScenarioError) as err:
        load_file(project / "s.yaml", display="s.yaml", root=project)
    (problem,) = err.value.problems
    assert problem.message == f"resolves outside {project} (the run's root directory): scenario files are project files"


def test_csv_lines_and_error_messages_are_bounded(tmp_path: Path) -> None:
    """A one-line CSV of megabytes is refused at its first line; a huge header is not echoed whole."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "wide.csv").write_text("a," * 400_000 + "b\n1,2\n")
    message = file_problem(tmp_path, "wide.csv").message
    assert message == (
        "wide.csv, line 1 is longer than 65536 characters (raise it with --convergence-limit line_chars=N)"
    )
    (project / "many.csv").write_text(",".join(f"column{i}" for i in range(5000)) + "\n1\n")
    path = project / "s.yaml"
    path.write_text(
        BASE + "  - name: a\n    data: {file: many.csv, x_columns: [a], y_columns: [b]}\n"
        "    expect: {diverges: {within_epochs: 3}}\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_file(path, display="s.yaml", root=project, limits=Limits(line_chars=10**6))
    message = err.value.problems[0].message
    assert message.startswith("no column 'a' in many.csv; its columns are ['column0', 'column1',")
    assert len(message) < 1000 and message.endswith(", …]")


def test_a_scenario_file_is_bounded_before_it_is_parsed(tmp_path: Path) -> None:
    """Above the cap the file is refused unread (not parsed for a minute into a gigabyte of nodes)."""
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - name: a\n    data: {x: [" + "1, " * 200_000 + "1], y: '2 * x'}\n")
    with pytest.raises(ScenarioError) as err:
        load_file(path, display="s.yaml")
    (problem,) = err.value.problems
    assert problem.message.startswith("larger than 262144 bytes, the limit for a scenario file (raise it with")
    with pytest.raises(ScenarioError) as err:
        load_file(path, display="s.yaml", limits=Limits(scenario_file_bytes=10**7))
    assert "document has over 200000 values" in str(err.value)


def _data_file(project: Path, file: str) -> Path:
    path = project / "s.yaml"
    path.write_text(
        BASE + f"  - name: a\n    data: {{file: '{file}'}}\n    expect: {{diverges: {{within_epochs: 3}}}}\n"
    )
    return path


def test_indentation_mistakes_are_said_as_such(tmp_path: Path) -> None:
    """The newcomer's mistakes: a key left at the scenario's level under an empty `expect:`, and a line indented to
    a column no key above it starts at."""
    under = problems(tmp_path, BASE + "  - name: a\n    expect:\n    converges: {loss_below: 1.0}\n")
    assert [(p.line, p.key, p.message) for p in under] == [
        (9, "scenarios[0].expect", "is empty: its keys go on the lines below it, indented further than 'expect:' "
         "(or write its value on the same line)"),
        (10, "scenarios[0].converges", "unknown key 'converges' here: it belongs under 'expect:' — indent it further "
         "than 'expect:'"),
    ]  # fmt: skip
    columns = only(tmp_path, BASE + "  - name: a\n    expect:\n      converges: {loss_below: 1.0}\n     predict: 1\n")
    assert columns.line == 11 and columns.message.startswith("the indentation does not line up: this line starts at")
    expect = "    expect: {converges: {loss_below: 1.0}}\n"
    assert only(tmp_path, BASE + "  - name: a\n    epocs: 5\n" + expect).message.startswith(
        "unknown key 'epocs'; did you mean 'epochs'? Allowed here: name,"
    )
    assert only(tmp_path, BASE + "  - name: a\n    colour: red\n" + expect).message.startswith(
        "unknown key 'colour'. Allowed here:"
    )
