"""check-env: what a tox env's name promises, and an environment that holds what it promises, one distribution each."""

from __future__ import annotations

import pytest

from pytest_convergence.envcheck import Promise, problems, promise
from pytest_convergence.errors import InputError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tf215", Promise("2.15", "keras", 2)),
        ("tf221", Promise("2.21", "keras", 3)),
        ("tf216-legacy", Promise("2.16", "tf_keras", 2)),
        ("tf212", Promise("2.12", "keras", 2)),
        ("nightly", Promise(None, "keras", 3, nightly=True)),
    ],
)
def test_env_names_promise_versions(name: str, expected: Promise) -> None:
    assert promise(name, None) == expected


def test_an_unknown_env_name_says_what_names_look_like() -> None:
    with pytest.raises(InputError, match="tf215, tf216-legacy or nightly"):
        promise("tf-next", None)


KERAS3 = {"tensorflow": "2.21.0", "keras": "3.15.1", "keras_package": "keras"}
LEGACY = {"tensorflow": "2.21.0", "keras": "2.21.0", "keras_package": "tf_keras"}
NIGHTLY = {"tensorflow": "2.23.0-dev20261026", "keras": "3.16.0.dev2026102704", "keras_package": "keras"}


def test_an_env_as_promised_has_no_problems() -> None:
    assert problems(promise("tf221", None), KERAS3, {"tensorflow-cpu": "2.21.0", "keras": "3.15.1"}) == []
    legacy = {"tensorflow": "2.21.0", "tf-keras": "2.21.0", "keras": "3.15.1"}
    assert problems(promise("tf221-legacy", None), LEGACY, legacy) == []
    nightly = {"tf-nightly": "2.23.0.dev20261026", "keras-nightly": "3.16.0.dev2026102704"}
    assert problems(promise("nightly", None), NIGHTLY, nightly) == []


def test_two_tensorflow_distributions_in_one_env_are_a_mismatch() -> None:
    """What tf2NN-legacy used to hold: tensorflow-cpu from the matrix, tensorflow through tf-keras's requirement."""
    both = {"tensorflow-cpu": "2.21.0", "tensorflow": "2.21.0", "tf-keras": "2.21.0", "keras": "3.15.1"}
    assert problems(promise("tf221-legacy", None), LEGACY, both) == [
        "2 TensorFlow distributions are installed (tensorflow 2.21.0, tensorflow-cpu 2.21.0); one env, one TensorFlow"
    ]


def test_a_nightly_env_must_hold_nightly_builds() -> None:
    released = {"tensorflow-cpu": "2.21.0", "keras": "3.15.1", "keras-nightly": "3.16.0.dev2026102704"}
    found = problems(promise("nightly", None), KERAS3, released)
    assert found == [
        "TensorFlow 2.21.0 imports, but a nightly (dev) build was promised",
        "tf-nightly is not installed, but the nightly env promises it",
        "2 Keras distributions are installed (keras 3.15.1, keras-nightly 3.16.0.dev2026102704); one env, one Keras",
    ]
