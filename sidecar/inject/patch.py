"""The RFC 6902 JSON Patch from the pod the API server sent to the injected pod.

A structural diff that reads like the change it describes: a key added, removed or
replaced where it changed; in a list of named objects (containers, ports, volumes, env)
items are matched by ``name``, so the sidecar arrives as one ``add
/spec/containers/0`` and the app container's renamed port as one ``replace``. Other lists
are matched by their common head and tail. Anything else that differs is replaced whole.
Applying the patch to ``src`` gives ``dst`` exactly (tests/inject/test_patch.py checks it
against the `jsonpatch` library on the corpus and on generated documents).
"""

from __future__ import annotations

from typing import Any

__all__ = ["json_patch"]

Op = dict[str, Any]


def _pointer(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}/{key}"
    return f"{path}/{key.replace('~', '~0').replace('/', '~1')}"


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: Python's ``==`` (fast, in C) and then the same types all the way
    down (``1 == 1.0 == True`` in Python, not in JSON)."""
    return bool(a == b) and _same_types(a, b)


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return all(map(_same_types, a, b))
    return True


def json_patch(src: Any, dst: Any) -> list[Op]:
    """The operations that turn ``src`` into ``dst`` (both plain JSON data)."""
    ops: list[Op] = []
    _diff(src, dst, "", ops)
    return ops


def _diff(src: Any, dst: Any, path: str, ops: list[Op]) -> None:
    if _same(src, dst):
        return
    if isinstance(src, dict) and isinstance(dst, dict):
        for key in src:
            if key not in dst:
                ops.append({"op": "remove", "path": _pointer(path, key)})
        for key, value in dst.items():
            if key not in src:
                ops.append({"op": "add", "path": _pointer(path, key), "value": value})
            else:
                _diff(src[key], value, _pointer(path, key), ops)
        return
    if isinstance(src, list) and isinstance(dst, list):
        if not _diff_named(src, dst, path, ops):
            _diff_list(src, dst, path, ops)
        return
    ops.append({"op": "replace", "path": path, "value": dst})


def _names(items: list[Any]) -> list[Any] | None:
    """The items' ``name`` values when every item is an object with a distinct name."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if any(not isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return names


def _diff_named(src: list[Any], dst: list[Any], path: str, ops: list[Op]) -> bool:
    """Lists of named objects: removes, then adds and diffs in ``dst``'s order.

    False (nothing emitted) when the items are not all named, or when the names that stay
    change their order (then `_diff_list` handles it).
    """
    old, new = _names(src), _names(dst)
    if old is None or new is None:
        return False
    old_set, new_set = set(old), set(new)
    if [n for n in old if n in new_set] != [n for n in new if n in old_set]:
        return False
    current = list(old)
    for index in range(len(old) - 1, -1, -1):
        if old[index] not in new_set:
            ops.append({"op": "remove", "path": _pointer(path, index)})
            del current[index]
    by_name = {item["name"]: item for item in src}
    for index, item in enumerate(dst):
        name = item["name"]
        if index < len(current) and current[index] == name:
            _diff(by_name[name], item, _pointer(path, index), ops)
        else:
            ops.append({"op": "add", "path": _pointer(path, index), "value": item})
            current.insert(index, name)
    return True


def _diff_list(src: list[Any], dst: list[Any], path: str, ops: list[Op]) -> None:
    """Common head and tail kept; the middle diffed item by item, added, removed or replaced."""
    head = 0
    limit = min(len(src), len(dst))
    while head < limit and _same(src[head], dst[head]):
        head += 1
    tail = 0
    while tail < limit - head and _same(src[-1 - tail], dst[-1 - tail]):
        tail += 1
    middle_src = src[head : len(src) - tail]
    middle_dst = dst[head : len(dst) - tail]
    if not middle_src:
        for offset, value in enumerate(middle_dst):
            ops.append({"op": "add", "path": _pointer(path, head + offset), "value": value})
    elif not middle_dst:
        for _ in middle_src:
            ops.append({"op": "remove", "path": _pointer(path, head)})
    elif len(middle_src) == len(middle_dst):
        for offset, (a, b) in enumerate(zip(middle_src, middle_dst, strict=True)):
            _diff(a, b, _pointer(path, head + offset), ops)
    else:
        ops.append({"op": "replace", "path": path, "value": dst})
