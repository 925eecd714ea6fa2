"""A model factory runs reviewed Python source inside the run's root directory and nothing else: not a package
`__init__.py` linked from outside, not an extension module or sourceless bytecode the import system would prefer
over the source, not a committed `__pycache__` file, not a module of the same name imported from elsewhere.

Each attack is built for real (a marker file written by the code that must not run, a real shared library from this
Python's lib-dynload, a real unchecked-hash pyc), and the import system's own finder is asked first, as an
independent oracle, whether it would have picked the attacker's file."""

from __future__ import annotations

import importlib.machinery
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_convergence.errors import FactoryError
from pytest_convergence.keras.build import load_factory, locate_factory

BENIGN = "def build():\n    return 'reviewed'\n"


def marker_code(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\ndef build():\n    return 'attacker'\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def fresh_modules() -> Iterator[None]:
    """The factories these tests load are dropped from sys.modules afterwards (each test uses its own names)."""
    before = set(sys.modules)
    meta_path = list(sys.meta_path)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    assert sys.meta_path == meta_path  # the confinement's finder is gone after loading


def would_import(folder: Path, name: str) -> str | None:
    """The file the import system's own finder picks for `name` in `folder` (the oracle)."""
    finder = importlib.machinery.FileFinder(str(folder), *_loaders())
    spec = finder.find_spec(name)
    return spec.origin if spec is not None else None


def _loaders() -> list[tuple[type, list[str]]]:
    m = importlib.machinery
    return [
        (m.ExtensionFileLoader, m.EXTENSION_SUFFIXES),
        (m.SourceFileLoader, m.SOURCE_SUFFIXES),
        (m.SourcelessFileLoader, m.BYTECODE_SUFFIXES),
    ]


def a_shared_library() -> Path:
    """A real extension module of this Python (its constructor would run when loaded)."""
    import _json

    return Path(str(_json.__file__))


def refused(ref: str, root: Path, match: str) -> None:
    """Refused at collection (found without importing) and again when the scenario would run."""
    with pytest.raises(FactoryError, match=match):
        locate_factory(ref, root, root)
    with pytest.raises(FactoryError, match=match):
        load_factory(ref, root, root)


# ---- what works


def test_a_factory_in_a_module_a_package_or_a_namespace_package_is_loaded_when_asked(root: Path) -> None:
    (root / "conf_plain.py").write_text(BENIGN)
    (root / "conf_pkg").mkdir()
    (root / "conf_pkg" / "__init__.py").write_text("from . import helpers\n")
    (root / "conf_pkg" / "helpers.py").write_text("VALUE = 'helped'\n")
    (root / "conf_pkg" / "models.py").write_text(
        "from .helpers import VALUE\nimport conf_sibling\ndef build():\n    from . import lazy\n"
        "    from importlib.resources import files\n"
        "    return VALUE, conf_sibling.NAME, lazy.LAZY, files(__package__).joinpath('d').read_text()\n"
    )
    (root / "conf_pkg" / "d").write_text("data")
    (root / "conf_pkg" / "lazy.py").write_text("LAZY = 'lazy'\n")
    (root / "conf_sibling.py").write_text("NAME = 'sibling'\n")
    (root / "conf_ns" / "inner").mkdir(parents=True)
    (root / "conf_ns" / "inner" / "models.py").write_text(BENIGN)
    assert load_factory("conf_plain:build", root, root)() == "reviewed"
    assert load_factory("conf_pkg.models:build", root, root)() == ("helped", "sibling", "lazy", "data")
    assert load_factory("conf_ns.inner.models:build", root, root)() == "reviewed"
    assert sys.modules["conf_pkg.models"].__file__ == str(root / "conf_pkg" / "models.py")


def test_a_link_that_stays_inside_the_root_is_followed(root: Path) -> None:
    (root / "real").mkdir()
    (root / "real" / "conf_linked.py").write_text(BENIGN)
    (root / "conf_linked.py").symlink_to(root / "real" / "conf_linked.py")
    assert load_factory("conf_linked:build", root, root)() == "reviewed"


def test_a_folder_without_init_does_not_hide_an_installed_package(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project folder such as logs/ or tensorboard/ is a namespace package only where nothing else has that name."""
    (tmp_path / "site" / "conf_installed").mkdir(parents=True)
    (tmp_path / "site" / "conf_installed" / "__init__.py").write_text("VALUE = 'installed'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (root / "conf_installed").mkdir()  # say, a folder of logs
    (root / "conf_lazy.py").write_text("def build():\n    import conf_installed\n    return conf_installed.VALUE\n")
    assert load_factory("conf_lazy:build", root, root)() == "installed"


def test_a_factory_module_of_the_same_name_imported_from_elsewhere_is_refused(root: Path) -> None:
    """pytest is imported in this process: the factory would be pytest's, not the project's file."""
    (root / "pytest.py").write_text(BENIGN)
    with pytest.raises(FactoryError, match=r"'pytest' was imported from .*, not from .*pytest\.py: rename"):
        load_factory("pytest:build", root, root)


# ---- finding 5: what the import system would run instead of the reviewed source


def test_a_package_init_linked_outside_the_root_never_runs(root: Path, tmp_path: Path) -> None:
    """(a) Importing pkg.models executes pkg/__init__.py first: every package on the way is checked, not the leaf."""
    marker = tmp_path / "marker"
    (tmp_path / "elsewhere.py").write_text(marker_code(marker))
    (root / "conf_evil_pkg").mkdir()
    (root / "conf_evil_pkg" / "__init__.py").symlink_to(tmp_path / "elsewhere.py")
    (root / "conf_evil_pkg" / "models.py").write_text(BENIGN)
    refused(
        "conf_evil_pkg.models:build",
        root,
        r"module 'conf_evil_pkg' leads outside .*project.*conf_evil_pkg/__init__\.py is .*elsewhere\.py",
    )
    assert not marker.exists()


@pytest.mark.parametrize("suffix", importlib.machinery.EXTENSION_SUFFIXES)
def test_an_extension_module_beside_the_source_is_refused_before_it_loads(root: Path, suffix: str) -> None:
    """(b) An extension module of the same name wins over the .py a reviewer reads; refused before importing,
    whatever extension suffix it has."""
    (root / "conf_ext.py").write_text(BENIGN)
    (root / f"conf_ext{suffix}").symlink_to(a_shared_library())
    assert would_import(root, "conf_ext") == str(root / f"conf_ext{suffix}")  # the attack is real
    refused("conf_ext:build", root, rf"conf_ext{suffix} would be imported instead of the source.*only Python source")


def test_an_extension_package_init_is_refused(root: Path) -> None:
    (root / "conf_ext_pkg").mkdir()
    (root / "conf_ext_pkg" / "__init__.py").write_text("")
    (root / "conf_ext_pkg" / "models.py").write_text(BENIGN)
    library = root / "conf_ext_pkg" / f"__init__{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    library.write_bytes(a_shared_library().read_bytes())  # a plain file this time, not a link
    assert would_import(root, "conf_ext_pkg") == str(library)
    refused("conf_ext_pkg.models:build", root, r"conf_ext_pkg/__init__\.cpython.* would be imported instead")


def test_sourceless_bytecode_as_a_package_init_is_refused(root: Path, tmp_path: Path) -> None:
    """A folder with `__init__.pyc` and no `__init__.py` is a package whose code no reviewer can read."""
    marker = tmp_path / "marker"
    (tmp_path / "evil.py").write_text(marker_code(marker))
    (root / "conf_pyc_pkg").mkdir()
    py_compile.compile(str(tmp_path / "evil.py"), cfile=str(root / "conf_pyc_pkg" / "__init__.pyc"), doraise=True)
    (root / "conf_pyc_pkg" / "models.py").write_text(BENIGN)
    assert would_import(root, "conf_pyc_pkg") == str(root / "conf_pyc_pkg" / "__init__.pyc")
    refused("conf_pyc_pkg.models:build", root, r"__init__\.pyc would be imported instead of the source")
    assert not marker.exists()


def test_sourceless_bytecode_beside_the_source_is_refused(root: Path) -> None:
    (root / "conf_beside.py").write_text(BENIGN)
    py_compile.compile(str(root / "conf_beside.py"), cfile=str(root / "conf_beside.pyc"), doraise=True)
    refused("conf_beside:build", root, r"conf_beside\.pyc would be imported instead")


@pytest.mark.parametrize("package", [False, True])
def test_a_committed_unchecked_hash_pyc_never_runs(root: Path, tmp_path: Path, package: bool) -> None:
    """(c) An unchecked-hash pyc in __pycache__ is used whatever the source says: the factory's code is compiled
    from the reviewed source text, and no __pycache__ file is read (nor written)."""
    marker = tmp_path / "marker"
    folder = root / "conf_cached_pkg" if package else root
    folder.mkdir(exist_ok=True)
    source = folder / ("__init__.py" if package else "conf_cached.py")
    source.write_text(BENIGN)
    (tmp_path / "evil.py").write_text(marker_code(marker))
    cached = importlib.util.cache_from_source(str(source))
    py_compile.compile(
        str(tmp_path / "evil.py"),
        cfile=cached,
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    before = sorted(p.name for p in Path(cached).parent.iterdir())
    assert load_factory("conf_cached_pkg:build" if package else "conf_cached:build", root, root)() == "reviewed"
    assert not marker.exists()
    assert sorted(p.name for p in Path(cached).parent.iterdir()) == before


def test_a_project_module_the_factory_imports_is_confined_too(root: Path, tmp_path: Path) -> None:
    """What the factory's module imports from the project goes through the same checks: its __pycache__ is not
    read, and an extension module beside it is refused."""
    marker = tmp_path / "marker"
    (root / "conf_uses.py").write_text("import conf_helper\ndef build():\n    return conf_helper.build()\n")
    (root / "conf_helper.py").write_text(BENIGN)
    (tmp_path / "evil.py").write_text(marker_code(marker))
    py_compile.compile(
        str(tmp_path / "evil.py"),
        cfile=importlib.util.cache_from_source(str(root / "conf_helper.py")),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    assert load_factory("conf_uses:build", root, root)() == "reviewed"
    assert not marker.exists()
    (root / "conf_uses2.py").write_text("import conf_helper2\ndef build():\n    pass\n")
    (root / "conf_helper2.py").write_text(BENIGN)
    (root / f"conf_helper2{importlib.machinery.EXTENSION_SUFFIXES[0]}").symlink_to(a_shared_library())
    with pytest.raises(FactoryError, match=r"conf_helper2\.cpython.* would be imported instead"):
        load_factory("conf_uses2:build", root, root)


# ---- the names a factory may not take


def test_a_standard_library_name_is_refused_at_collection(root: Path) -> None:
    """root/json.py would be a different json for everything else in the run (or be ignored, json being loaded)."""
    (root / "json.py").write_text(BENIGN)
    with pytest.raises(FactoryError, match=r"json\.py has the name of the standard-library module 'json'.*rename it"):
        locate_factory("json:build", root, root)


def test_a_package_already_imported_from_elsewhere_is_refused_before_importing(root: Path, tmp_path: Path) -> None:
    """numpy is loaded here: numpy.mine would be looked up in the installed numpy, not the project's."""
    marker = tmp_path / "marker"
    (root / "numpy").mkdir()
    (root / "numpy" / "__init__.py").write_text("")
    (root / "numpy" / "mine.py").write_text(marker_code(marker))
    import numpy

    assert numpy  # loaded before the factory
    with pytest.raises(FactoryError, match=r"'numpy' was imported from .*site-packages.*, not from .*: rename"):
        load_factory("numpy.mine:build", root, root)
    assert not marker.exists()


@pytest.mark.keras  # collecting checks the file's Keras names: TensorFlow is imported
@pytest.mark.usefixtures("tensorflow_imported_once")
def test_the_plugin_reports_a_refused_factory_at_collection_without_running_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Through pytest: the scenario's line, the offending file, what is allowed; no traceback, nothing ran."""
    from texts import HEADER

    marker = tmp_path / "marker"
    (tmp_path / "elsewhere.py").write_text(marker_code(marker))
    (pytester.path / "conf_plug").mkdir()
    (pytester.path / "conf_plug" / "__init__.py").symlink_to(tmp_path / "elsewhere.py")
    (pytester.path / "conf_plug" / "models.py").write_text(BENIGN)
    (pytester.path / "conf_models.py").write_text(BENIGN)
    (pytester.path / f"conf_models{importlib.machinery.EXTENSION_SUFFIXES[-1]}").symlink_to(a_shared_library())
    pytester.makefile(
        ".yaml",
        f=HEADER
        + "  - name: linked\n    model: 'conf_plug.models:build'\n    expect: {diverges: {within_epochs: 30}}\n"
        + "  - name: beside\n    model: 'conf_models:build'\n    expect: {diverges: {within_epochs: 30}}\n",
    )
    result = pytester.runpytest("--scenarios", ".")
    result.stdout.fnmatch_lines(
        [
            "*f.yaml:10: scenarios[[]0[]].model: the model factory's module 'conf_plug' leads outside*"
            "conf_plug/__init__.py is *elsewhere.py*",
            "*f.yaml:13: scenarios[[]1[]].model: *conf_models.so would be imported instead of the source*only "
            "Python source files (.py)*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert result.ret == pytest.ExitCode.INTERRUPTED and not marker.exists()


def test_a_project_module_on_another_path_entry_is_confined_too(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The factory in scenarios/ imports a module of the root folder, which is on sys.path as the current folder is
    under `python -m pytest`: that module, too, runs from its reviewed source, not from a committed pyc."""
    marker = tmp_path / "marker"
    (root / "scenarios").mkdir()
    (root / "scenarios" / "conf_far.py").write_text(
        "import conf_root_helper\ndef build():\n    return conf_root_helper.build()\n"
    )
    (root / "conf_root_helper.py").write_text(BENIGN)
    (tmp_path / "evil.py").write_text(marker_code(marker))
    py_compile.compile(
        str(tmp_path / "evil.py"),
        cfile=importlib.util.cache_from_source(str(root / "conf_root_helper.py")),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    monkeypatch.syspath_prepend(str(root))
    assert load_factory("conf_far:build", root / "scenarios", root)() == "reviewed"
    assert not marker.exists()
