"""`data:` specs → numpy arrays: inline lists, linspace/arange, safe expressions, CSV and NPZ files."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from . import expr
from .errors import DataError, ExpressionError
from .limits import DEFAULTS, Limits
from .loader import Key

if TYPE_CHECKING:
    from .spec import DataSpec

MAX_SAMPLES = 1_000_000
MAX_VALUES = 10_000_000  # numbers in one array of a data file (80 MB as float64)
X_FORMS = "an inline list, {linspace: [start, stop, num]} or {arange: [start, stop]} / {arange: [start, stop, step]}"


def is_number(value: Any) -> bool:
    """An int or float that fits a float64 (YAML integers can be arbitrarily large); NaN and inf count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def build(
    spec: DataSpec, base_dir: Path, root: Path | None = None, limits: Limits = DEFAULTS
) -> tuple[np.ndarray, np.ndarray]:
    """Arrays x (samples, *x_shape) and y (samples, outputs), finite, of equal length; y float32, x float32 or
    int32 (x_dtype; an .npz file's integer x by default). A data file is read only where it resolves (symlinks
    followed) inside `root` (default: `base_dir`)."""
    if spec.dataset is not None:
        for key in ("x", "y", "file", "x_columns", "y_columns"):
            if getattr(spec, key) is not None:
                raise DataError((key,), f"give either data.dataset or data.{key}, not both")
        x, y = _dataset(spec.dataset)
    elif spec.file is not None:
        for key in ("x", "y"):
            if getattr(spec, key) is not None:
                raise DataError((key,), "give either data.file or inline x/y, not both")
        x, y = _from_file(spec, base_dir, root or base_dir, limits)
    else:
        for key in ("x_columns", "y_columns"):
            if getattr(spec, key) is not None:
                raise DataError((key,), f"{key} only goes with data.file")
        if spec.x is None:
            raise DataError(("x",), f"missing: x is {X_FORMS}, or give data.file")
        if spec.y is None:
            raise DataError(("y",), "missing: y is an inline list or an expression in x such as '0.5 * x'")
        x = _x(spec.x)
        y = _y(spec.y, x)
    if len(x) != len(y):
        raise DataError(("y",), f"x has {len(x)} samples but y has {len(y)}; they must be equal")
    if spec.noise is not None:
        rng = np.random.default_rng(spec.noise.seed)
        y = y + rng.normal(0.0, spec.noise.std, size=y.shape)
    for key, arr in (("x", x), ("y", y)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
        if bad.size:
            shown = spec.file is not None or x.ndim > 2  # a file's content is not echoed
            where = "" if shown else f" (x = {x[bad[0]].tolist()})"
            raise DataError(
                ("file",) if spec.file is not None else (key,),
                f"{key} has {bad.size} non-finite value(s) (NaN or inf), first at sample {bad[0]}{where}; "
                "data must be finite",
            )
    if spec.x_shape is not None:
        features = math.prod(x.shape[1:])
        if math.prod(spec.x_shape) != features:
            raise DataError(
                ("x_shape",),
                f"{spec.x_shape} holds {math.prod(spec.x_shape)} values per sample, but x has {features} "
                f"(shape {list(x.shape[1:])}); the product must match",
            )
        x = x.reshape((len(x), *spec.x_shape))
    integer = spec.x_dtype == "int32" or (spec.x_dtype is None and x.dtype.kind in "iu")
    if integer:
        if not np.array_equal(x, np.round(x)) or np.abs(x).max(initial=0) >= 2**31:
            raise DataError(("x_dtype",), "int32 needs whole numbers below 2**31 in x (tokens, class indices)")
        x = x.astype(np.int32)
    else:
        x = x.astype(np.float32)
    if spec.shuffle_seed is not None:
        order = np.random.default_rng(spec.shuffle_seed).permutation(len(x))
        x, y = x[order], y[order]
    return x, y.astype(np.float32)


def _dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """x (samples, features) and y (samples, 1) of one of scikit-learn's small datasets (DataSpec.dataset names
    them), read from its installed package — nothing is downloaded — as its loader returns them
    (digits: 64 pixel values 0..16 per 8×8 image; classes as 0, 1, …)."""
    try:
        from sklearn import datasets
    except ImportError:
        raise DataError(
            ("dataset",),
            f"data.dataset {name!r} needs scikit-learn, which is not installed here: "
            "pip install 'pytest-convergence[datasets]' (or scikit-learn)",
        ) from None
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(len(y), -1)


def _x(value: Any) -> np.ndarray:
    if isinstance(value, list):
        return table(value, ("x",))
    if isinstance(value, dict) and len(value) == 1:
        ((kind, args),) = value.items()
        if kind in ("linspace", "arange"):
            nums = _numbers(args, (kind,), 3 if kind == "linspace" else (2, 3))
            return (_linspace(nums) if kind == "linspace" else _arange(nums)).reshape(-1, 1)
    raise DataError(("x",), f"x must be {X_FORMS}, got {value!r:.80}")


def _linspace(nums: list[float]) -> np.ndarray:
    start, stop, num = nums
    if not 1 <= num <= MAX_SAMPLES or num != int(num):
        raise DataError(("x", "linspace"), f"num must be a whole number from 1 to {MAX_SAMPLES}, got {num}")
    return np.linspace(start, stop, int(num), dtype=np.float64)


def _arange(nums: list[float]) -> np.ndarray:
    start, stop, step = (*nums, 1.0) if len(nums) == 2 else nums
    if step == 0:
        raise DataError(("x", "arange"), "step must not be 0")
    with np.errstate(all="ignore"):
        count = float(np.ceil((stop - start) / step))
    if not 1 <= count <= MAX_SAMPLES:  # NaN and inf fail this too
        shown = f"{count:.3g}" if count == count else "no number of"
        raise DataError(("x", "arange"), f"gives {shown} samples; 1 to {MAX_SAMPLES} allowed")
    return np.arange(start, stop, step, dtype=np.float64)


def _numbers(args: Any, loc: tuple[Key, ...], count: int | tuple[int, ...]) -> list[float]:
    counts = (count,) if isinstance(count, int) else count
    ok = isinstance(args, list) and len(args) in counts
    if ok and all(is_number(a) for a in args):
        return [float(a) for a in args]
    want = " or ".join(str(c) for c in counts)
    raise DataError(("x", *loc), f"needs a list of {want} numbers, got {args!r:.80}")


def table(value: list[Any], loc: tuple[Key, ...]) -> np.ndarray:
    """An inline list as written in data.x / data.y and expect.predict: numbers → one column; lists of numbers →
    one row per sample, all of one length. float64; a problem is a DataError at `loc`."""
    if not value:
        raise DataError(loc, "must not be empty")
    if len(value) > MAX_SAMPLES:
        raise DataError(loc, f"has {len(value)} samples; at most {MAX_SAMPLES} allowed")

    if all(is_number(v) for v in value):
        return np.asarray(value, dtype=np.float64).reshape(-1, 1)
    if all(isinstance(r, list) and r and all(is_number(v) for v in r) for r in value):
        widths = {len(r) for r in value}
        if len(widths) == 1:
            return np.asarray(value, dtype=np.float64)
        raise DataError(loc, f"rows have different lengths {sorted(widths)}; each sample needs the same count")
    raise DataError(loc, "must be a list of numbers, or a list of equal-length lists of numbers")


def _y(value: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(value, list):
        return table(value, ("y",))
    if isinstance(value, str):
        variables = {f"x{i}": x[:, i] for i in range(x.shape[1])}
        if x.shape[1] == 1:
            variables = {"x": x[:, 0], **variables}
        try:
            result = expr.evaluate(value, variables)
        except ExpressionError as exc:
            raise DataError(("y",), str(exc)) from None
        return np.broadcast_to(result, (len(x),)).reshape(-1, 1).astype(np.float64)
    raise DataError(("y",), f"y must be an inline list or an expression string such as '0.5 * x', got {value!r:.80}")


def _from_file(spec: DataSpec, base_dir: Path, root: Path, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    assert spec.file is not None
    path = (base_dir / spec.file).resolve()
    # before anything else: a path outside the tree may not even be told to exist
    if not path.is_relative_to(root.resolve()):
        raise DataError(
            ("file",), f"data.file must stay inside {root} (the run's root directory); {spec.file!r} leads outside it"
        )
    if not path.is_file():
        raise DataError(("file",), f"no such file: {spec.file} (data.file is relative to the YAML file)")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise DataError(("file",), f"data.file must be a .csv or .npz file, got {path.name!r}")
    if suffix == ".npz":
        for key in ("x_columns", "y_columns"):
            if getattr(spec, key) is not None:
                raise DataError((key,), "an .npz file holds arrays named x and y; columns are for CSV")
    with _open_inside(path, spec.file, root, limits.data_file_bytes) as fh:
        return _npz(fh, path.name) if suffix == ".npz" else _csv(fh, path.name, spec, limits.line_chars)


@contextlib.contextmanager
def _open_inside(path: Path, given: str, root: Path, cap: int) -> Iterator[BinaryIO]:
    """The data file, opened once and checked as opened: the file read is the one that resolves inside `root` now
    (a file swapped for a symlink between the check above and the open is refused), a regular file of at most
    `cap` bytes."""
    with path.open("rb") as fh:
        opened = os.fstat(fh.fileno())
        if not opened_inside(fh, path, root) or not stat.S_ISREG(opened.st_mode):
            raise DataError(("file",), f"data.file {given!r} changed while it was opened; it must stay inside {root}")
        if opened.st_size > cap:
            raise DataError(
                ("file",),
                f"{path.name} has {opened.st_size} bytes; data files of at most {cap} are read (raise it with "
                "--convergence-limit data_file_bytes=N)",
            )
        yield fh


def opened_inside(fh: BinaryIO, path: Path, root: Path) -> bool:
    """Whether `fh`, opened from `path`, is the file `path` resolves to now, and that lies inside `root`: checked on
    the open file, so that a file swapped for a symlink out of the tree after an earlier check is refused (for scenario
    files and data files alike)."""
    now = Path(os.path.realpath(path))
    try:
        return now.is_relative_to(root.resolve()) and os.path.samestat(os.fstat(fh.fileno()), now.stat())
    except OSError:
        return False


NPZ_MEMBERS = {"x": "x.npy", "y": "y.npy"}  # the only members read (np.load would prefer a member named plain x)


def _npz(fh: BinaryIO, name: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an .npz file: the members x.npy and y.npy, each read from the header that was checked (shape and
    type, before any data is loaded: a small compressed file can hold a huge array), never unpickled."""
    arrays = []
    try:
        with zipfile.ZipFile(fh) as archive:
            members = archive.namelist()
            missing = [m for m in NPZ_MEMBERS.values() if m not in members]
            if missing:
                shown = ", ".join(repr(m) for m in members[:10]) + (" …" if len(members) > 10 else "")
                raise DataError(("file",), f"{name} lacks the array(s) {missing}; it holds {shown or 'nothing'}")
            for key, member_name in NPZ_MEMBERS.items():
                with archive.open(member_name) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = {
                        (1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0,
                    }.get(version)
                    if read_header is None:
                        raise DataError(("file",), f"{name}: array {key} is in .npy format {version}; 1.0 or 2.0")
                    shape, fortran, dtype = read_header(member)
                    _check_array(name, key, shape, dtype)
                    count = math.prod(shape)
                    raw = member.read(count * dtype.itemsize)
                    if len(raw) != count * dtype.itemsize:
                        raise DataError(("file",), f"{name}: array {key} is shorter than its header says")
                    flat = np.frombuffer(raw, dtype=dtype)
                    arrays.append(flat.reshape(shape, order="F") if fortran else flat.reshape(shape))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(("file",), f"cannot read {name} as .npz: {type(exc).__name__}") from None
    x, y = arrays
    # integer x (tokens) stays integer: x_dtype decides in `build`
    x = np.asarray(x, dtype=np.int64 if x.dtype.kind in "biu" else np.float64)
    y = y.astype(np.float64)
    return (x.reshape(len(x), 1) if x.ndim == 1 else x), y.reshape(len(y), -1)


def _check_array(name: str, key: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise DataError(("file",), f"{name}: array {key} holds {dtype.name}; numbers are needed")
    if len(shape) == 0 or shape[0] == 0 or any(not isinstance(d, int) or d < 0 for d in shape):
        raise DataError(("file",), f"{name}: array {key} has shape {shape}; one row per sample is needed")
    if shape[0] > MAX_SAMPLES or math.prod(shape) > MAX_VALUES:
        raise DataError(
            ("file",),
            f"{name}: array {key} has shape {shape}; at most {MAX_SAMPLES} samples and {MAX_VALUES} values",
        )


def _lines(fh: io.TextIOBase, name: str, cap: int) -> Iterator[str]:
    """The lines of a CSV file, each read with a bound: a longer line is refused before it is held whole."""
    number = 0
    while line := fh.readline(cap + 1):
        number += 1
        if len(line) > cap:
            raise DataError(
                ("file",),
                f"{name}, line {number} is longer than {cap} characters (raise it with --convergence-limit "
                "line_chars=N)",
            )
        yield line


def _csv(raw: BinaryIO, name: str, spec: DataSpec, line_chars: int) -> tuple[np.ndarray, np.ndarray]:
    for key in ("x_columns", "y_columns"):
        if not getattr(spec, key):
            raise DataError((key,), f"a CSV file needs {key}: the header names of its columns")
    rows: list[list[str]] = []
    try:
        fh = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        for row in csv.reader(_lines(fh, name, line_chars)):
            rows.append(row)
            if len(rows) > MAX_SAMPLES + 1:
                raise DataError(("file",), f"{name} has more than {MAX_SAMPLES} rows")
        fh.detach()
    except UnicodeDecodeError:
        raise DataError(("file",), f"{name} is not UTF-8 text; a CSV file with a header row is needed") from None
    except csv.Error as exc:
        raise DataError(("file",), f"{name} is not a CSV file this can read ({exc})") from None
    if not rows:
        raise DataError(("file",), f"{name} is empty")
    header = [h.strip() for h in rows[0]]
    columns = []
    for key in ("x_columns", "y_columns"):
        names: list[str] = getattr(spec, key)
        for i, column in enumerate(names):
            if column not in header:
                shown = ", ".join(repr(h[:40]) for h in header[:20]) + (", …" if len(header) > 20 else "")
                raise DataError((key, i), f"no column {column!r} in {name}; its columns are [{shown}]")
        columns.append([header.index(n) for n in names])
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    if not body:
        raise DataError(("file",), f"{name} has a header but no rows")
    out = []
    for idx in columns:
        values = []
        for line, row in body:
            try:
                values.append([float(row[i]) for i in idx])
            except (ValueError, IndexError):  # the cell's text is not echoed: it is the file's content
                message = f"{name}, row {line}: a wanted column is missing or not a number"
                raise DataError(("file",), message) from None
        out.append(np.asarray(values, dtype=np.float64))
    return out[0], out[1]
