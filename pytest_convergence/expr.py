"""Safe evaluation of `data.y` expressions such as "0.5 * x" or "sin(x0) + x1 ** 2".

The string is parsed with `ast` and only a small arithmetic subset is evaluated, node by node,
on numpy arrays. Nothing is ever passed to eval/exec, and names, attributes, subscripts,
keywords and every other construct are rejected before anything runs.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import ExpressionError

MAX_LENGTH = 1000
MAX_NODES = 300


def where(condition: Any, if_true: Any, if_false: Any) -> Any:
    """numpy's where with its three arguments: with one, numpy returns indices, not values."""
    return np.where(condition, if_true, if_false)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "exp": np.exp,
    "log": np.log,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "sign": np.sign,
    "floor": np.floor,
    "ceil": np.ceil,
    "round": np.round,
    "minimum": np.minimum,
    "maximum": np.maximum,
    "where": where,
}
CONSTANTS = {"pi": np.pi, "e": np.e}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}

ALLOWED = (
    "numbers, the variables {names}, + - * / // % **, parentheses, comparisons < <= > >= "
    "(giving 0 or 1), the constants pi and e, and the functions " + ", ".join(sorted(FUNCTIONS))
)


def evaluate(text: str, variables: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate `text` over `variables` (numpy arrays). Raises ExpressionError if not allowed."""
    allowed = ALLOWED.format(names=", ".join(variables))
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is {len(text)} characters long; at most {MAX_LENGTH} allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        msg = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise ExpressionError(f"cannot parse {text!r}: {msg}. Allowed: {allowed}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"expression has {count} parts; at most {MAX_NODES} allowed")
    with np.errstate(all="ignore"):
        result = _eval(tree.body, variables, allowed)
    return np.asarray(result, dtype=np.float64)


def _eval(node: ast.AST, env: Mapping[str, np.ndarray], allowed: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        try:
            return np.float64(node.value)  # never a Python int: no huge-integer arithmetic
        except OverflowError:
            raise ExpressionError(f"the number {str(node.value)[:20]}… is too large for a float64") from None
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id in CONSTANTS:
            return np.float64(CONSTANTS[node.id])
        raise ExpressionError(f"unknown name {node.id!r}. Allowed: {allowed}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left, env, allowed), _eval(node.right, env, allowed))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, env, allowed))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _eval(node.left, env, allowed)
        result: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=False):
            right = _eval(right_node, env, allowed)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return np.asarray(result, dtype=np.float64)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and not node.keywords
        and not any(isinstance(a, ast.Starred) for a in node.args)
    ):
        args = [_eval(a, env, allowed) for a in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{node.func.id}(): {exc}") from None
    what = _describe(node)
    raise ExpressionError(f"{what} is not allowed. Allowed: {allowed}")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return f"calling a method ('.{node.func.attr}')"
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name and name not in FUNCTIONS:
            return f"calling {name!r}"
        return "this call"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r}"
    return f"'{type(node).__name__}'"
