r"""Per-encoder specs: each candidate with its own weights, layer, image size and options.

Inline, in ``--encoders`` (commas inside brackets belong to the spec)::

    timm:resnet50[weights=r50.pth,image_size=224],hf:./my-bert[layer=6,label=bert-l6]

or as a zoo file (TOML) for long lists, one ``[[encoder]]`` table per candidate::

    [[encoder]]
    name = "timm:resnet50"        # required: what load_encoder takes
    label = "r50-inat"            # optional: the row's name (default: the spec text)
    weights = "ckpt/r50_inat.pth" # every other key is an option of that encoder
    image_size = 224

Values inside brackets are read as TOML scalars would be (``224`` an int, ``0.5`` a
float, ``true`` / ``false`` booleans, anything else a string; quote with ``"..."`` to
keep a string that looks like a number). A relative ``weights`` path in a zoo file is
taken relative to the file, so a zoo travels with its checkpoints.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...exceptions import TaskrelInputError

__all__ = ["EncoderSpec", "split_encoder_list", "parse_encoder_spec", "load_zoo",
           "encoder_specs"]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Options whose value is a path: relative paths in a zoo file resolve against it.
_PATH_KEYS = ("weights",)


@dataclass(frozen=True)
class EncoderSpec:
    """One candidate: ``name`` for :func:`taskrel.encoders.load_encoder`, its own
    ``options`` (they override options given for every encoder) and the ``label`` its
    rows carry."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", _default_label(self.name, self.options))


def _default_label(name: str, options: dict[str, Any]) -> str:
    if not options:
        return name
    return f"{name}[{','.join(f'{k}={v}' for k, v in options.items())}]"


def split_encoder_list(text: str, *, what: str = "--encoders") -> list[str]:
    """Split a comma-separated list of specs on the commas outside brackets.

    >>> split_encoder_list("a,timm:r50[weights=x.pth,image_size=224], b")
    ['a', 'timm:r50[weights=x.pth,image_size=224]', 'b']
    """
    if not isinstance(text, str):
        raise TaskrelInputError(f"`{what}` must be a string; got {type(text).__name__}")
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise TaskrelInputError(f"`{what}`: brackets do not nest; got {text!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise TaskrelInputError(f"`{what}`: a ']' without its '['; got {text!r}")
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise TaskrelInputError(f"`{what}`: a '[' without its ']'; got {text!r}")
    out.append("".join(cur).strip())
    return out


def _scalar(v: str) -> Any:
    s = v.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    return s


def parse_encoder_spec(text: str, *, what: str = "--encoders") -> EncoderSpec:
    """``NAME`` or ``NAME[key=value,...]`` -> :class:`EncoderSpec` (``label=`` sets the
    row's name).

    >>> s = parse_encoder_spec("timm:resnet50[weights=r50.pth,image_size=224]")
    >>> s.name, s.options
    ('timm:resnet50', {'weights': 'r50.pth', 'image_size': 224})
    """
    t = text.strip() if isinstance(text, str) else text
    if not isinstance(t, str) or not t:
        raise TaskrelInputError(f"`{what}`: an encoder spec must be a non-empty string; "
                                f"got {text!r}")
    m = re.fullmatch(r"([^\[\]]+?)\s*(?:\[(.*)\])?", t, flags=re.S)
    if m is None:
        raise TaskrelInputError(f"`{what}`: expected NAME or NAME[key=value,...]; "
                                f"got {text!r}")
    name, body = m.group(1).strip(), m.group(2)
    opts: dict[str, Any] = {}
    if body is not None and body.strip():
        for part in body.split(","):
            key, sep, val = part.partition("=")
            key = key.strip()
            if not sep or not _KEY.match(key) or not val.strip():
                raise TaskrelInputError(
                    f"`{what}`: each option in {text!r} must be key=value; got {part!r}")
            if key in opts:
                raise TaskrelInputError(f"`{what}`: option {key!r} given twice in {text!r}")
            opts[key] = _scalar(val)
    label = opts.pop("label", "")
    return EncoderSpec(name, opts, str(label))


def load_zoo(path: str | os.PathLike[str]) -> list[EncoderSpec]:
    """Read a zoo file (TOML, ``[[encoder]]`` tables; see the module docstring)."""
    import tomllib

    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise TaskrelInputError(f"`--zoo`: no such file {str(p)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskrelInputError(f"`--zoo`: {str(p)!r} is not valid TOML: {exc}") from None
    extra = sorted(set(raw) - {"encoder"})
    tables = raw.get("encoder")
    if extra or not isinstance(tables, list) or not tables:
        raise TaskrelInputError(
            f"`--zoo`: {str(p)!r} must hold [[encoder]] tables only (each with a `name`); "
            f"got keys {sorted(raw)}")
    out: list[EncoderSpec] = []
    for i, t in enumerate(tables):
        if not isinstance(t.get("name"), str) or not t["name"].strip():
            raise TaskrelInputError(f"`--zoo`: encoder {i + 1} in {str(p)!r} needs a "
                                    f"string `name`; got {t.get('name')!r}")
        opts = {k: v for k, v in t.items() if k not in ("name", "label")}
        # The default label shows the options as written (a relative weights path),
        # not the absolute path they resolve to.
        label = t.get("label", "") or _default_label(t["name"].strip(), opts)
        for k in _PATH_KEYS:
            if isinstance(opts.get(k), str) and not os.path.isabs(opts[k]) \
                    and ":" not in opts[k]:
                opts[k] = str((p.parent / opts[k]).resolve())
        if not isinstance(label, str):
            raise TaskrelInputError(f"`--zoo`: encoder {i + 1}'s `label` must be a "
                                    f"string; got {label!r}")
        out.append(EncoderSpec(t["name"].strip(), opts, label))
    _check_labels([s.label for s in out], f"`--zoo`: {str(p)!r}")
    return out


def _check_labels(labels: list[str], what: str) -> None:
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise TaskrelInputError(
            f"{what}: two encoders share the label(s) {dup}; each row needs its own "
            "name: give each a distinct label (NAME[label=...], or `label` in a zoo "
            "file)")


def encoder_specs(encoders: Any, *, what: str = "encoders") -> list[Any]:
    """The candidates of :func:`taskrel.rank`, one per row: each string (or each
    element of a comma-separated string, commas inside brackets kept) parsed into an
    :class:`EncoderSpec`; specs, :class:`~taskrel.encoders.Encoder` objects and torch
    modules passed through. Raises when the list is empty.

    >>> [s.label for s in encoder_specs("effnet_lite0,effnet_lite0[image_size=96]")]
    ['effnet_lite0', 'effnet_lite0[image_size=96]']
    """
    items = split_encoder_list(encoders, what=what) if isinstance(encoders, str) \
        else list(encoders) if encoders is not None else []
    if not items or any(isinstance(e, str) and not e.strip() for e in items):
        raise TaskrelInputError(f"`{what}` must name at least one encoder; got "
                                f"{encoders!r}")
    return [parse_encoder_spec(e, what=what) if isinstance(e, str) else e for e in items]
