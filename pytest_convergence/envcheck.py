"""`pytest-convergence check-env`: an environment holds the TensorFlow and Keras its name promises, one distribution
of each (tf216-legacy must not hold both tensorflow-cpu and, through tf-keras, tensorflow; nightly must hold
tf-nightly and keras-nightly). Pure except for `installed`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import InputError

# Distributions that install the same module: an environment holds one of each group.
# (tensorflow-intel is not among them: on Windows `tensorflow` installs it as its own half)
TENSORFLOWS = frozenset({"tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu"})
KERASES = frozenset({"keras", "keras-nightly"})
TF_KERASES = frozenset({"tf-keras", "tf-keras-nightly"})
SIBLINGS: tuple[frozenset[str], ...] = (KERASES, TENSORFLOWS, TF_KERASES)
NIGHTLY = "nightly"  # the env of tf-nightly + keras-nightly


@dataclass(frozen=True)
class Promise:
    """What an env promises: TensorFlow X.Y (None: a nightly build), the Keras package, Keras's major version."""

    tensorflow: str | None
    keras_package: str
    keras_major: int
    nightly: bool = False


def promise(env_name: str | None, tensorflow: str | None, keras_package: str = "keras") -> Promise:
    """The versions promised by a tox env name (tf215, tf216-legacy, nightly) or by explicit flags."""
    if env_name == NIGHTLY:
        return Promise(None, "keras", 3, nightly=True)
    if env_name:
        match = re.fullmatch(r"tf(\d)(\d+)(-legacy)?", env_name)
        if not match:
            raise InputError(f"--env-name {env_name!r}: expected a name like tf215, tf216-legacy or {NIGHTLY}")
        tensorflow = f"{match[1]}.{match[2]}"
        keras_package = "tf_keras" if match[3] else "keras"
    if not tensorflow:
        raise InputError("check-env needs --env-name or --tensorflow")
    keras3 = keras_package == "keras" and Version(tensorflow) >= Version("2.16")
    return Promise(tensorflow, keras_package, 3 if keras3 else 2)


def installed() -> dict[str, str]:
    """The TensorFlow and Keras distributions installed here: canonical name → version."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if any(name in group for group in SIBLINGS):
            found[name] = dist.version
    return found


def problems(wanted: Promise, imported: dict[str, str], distributions: dict[str, str]) -> list[str]:
    """What differs from the promise: `imported` is what trains (keras.versions()), `distributions` what is
    installed (`installed()`)."""
    out = []
    tf_version = _version(imported.get("tensorflow", ""))
    if wanted.nightly:
        if tf_version is None or not tf_version.is_devrelease:
            out.append(f"TensorFlow {imported.get('tensorflow')} imports, but a nightly (dev) build was promised")
        for names in (("tf-nightly", "tf-nightly-cpu"), ("keras-nightly",)):
            if not any(n in distributions for n in names):
                out.append(f"{names[0]} is not installed, but the {NIGHTLY} env promises it")
    elif tf_version is None or tf_version.release[:2] != Version(wanted.tensorflow or "0").release[:2]:
        out.append(f"TensorFlow {imported.get('tensorflow')} imports, but {wanted.tensorflow} was promised")
    if imported.get("keras_package") != wanted.keras_package:
        out.append(f"the Keras package is {imported.get('keras_package')}, but {wanted.keras_package} was promised")
    keras_version = _version(imported.get("keras", ""))
    if keras_version is None or keras_version.major != wanted.keras_major:
        out.append(f"Keras {imported.get('keras')} imports, but Keras {wanted.keras_major} was promised")
    for group, what in ((TENSORFLOWS, "TensorFlow"), (KERASES, "Keras"), (TF_KERASES, "tf-keras")):
        present = sorted(f"{n} {distributions[n]}" for n in group if n in distributions)
        if len(present) > 1:
            out.append(f"{len(present)} {what} distributions are installed ({', '.join(present)}); one env, one {what}")
    return out


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None
