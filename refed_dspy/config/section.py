"""The base of every config section, the types of its path and duration fields, and the pattern that tells a
secret's name.

Each table of the config is a `Section` (refed_dspy.config: the LM roles' `LMSpec`, `[synthesis]`, ...; a filter's
settings in refed_dspy.filters); refed_dspy.config composes them into the run's `Config`.

A path is taken as the user typed it: a leading `~` is their home directory, whatever passed the path on. A shell
expands `~` only where it is unquoted and starts a word: `--set run.dir='~/runs/x'`, a TOML file's `dir = "~/runs/x"`
and `refed view '~/runs/x'` all reach refed with the `~` still in them. Every path field of the config (`UserPath`) and
every path argument of the CLI goes through `expand_home`, so that none of them becomes a folder named `~` in the
current directory (which a later `rm -rf ~` would take for the home).

The names a config takes from a registry (a method, an optimizer, a target) are checked by one validator
(`Registered`).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import typing
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from refed_dspy.registry import Registry
from refed_dspy.secrets import query_credentials, without_query_credentials

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = [
    "MAX_NUMBER",
    "MAX_SECONDS",
    "SECRET_NAME",
    "ModelName",
    "Seconds",
    "Section",
    "UserPath",
    "VariableName",
    "expand_home",
    "http_endpoint",
    "is_path",
    "mask_secrets",
    "secret_values",
    "tomllib",
]


def expand_home(path: str) -> str:
    """`path` with a leading `~` (or `~user`) made that home directory, as a shell does; any other path, a hub name
    or a URI, as given."""
    return os.path.expanduser(path) if path.startswith("~") else path


# a key name that holds a secret: such a value never belongs in a config, a record or a log line
SECRET_NAME = re.compile(r"(api[_-]?key|secret|password|authorization|private[_-]?key|(^|_)token$)", re.I)
# a header that carries a credential (a gateway's `X-Portkey-Virtual-Key`, Azure API Management's
# `Ocp-Apim-Subscription-Key`, a cookie, a signature), by a word of its name: its value is masked wherever a config is
# written (`Keyword` or `X-Session-Affinity` is no such header)
SECRET_HEADER = re.compile(
    r"(^|[-_])(key|apikey|token|secret|signature|cookie|auth|authorization|password|credentials?)($|[-_])", re.I
)

# the largest magnitude any number of a config takes (a quadrillion): far above every real size, count, price or
# budget, and far below what overflows when figures are multiplied and made whole (1e308 calls per sample times the
# size is inf, and `math.ceil(inf)` an OverflowError)
MAX_NUMBER = 10**15


def _out_of_bounds(value: Any, where: str = "") -> tuple[str, float] | None:
    """The first number in `value` (a number, or one inside a list or table of plain values, e.g. `extra`) whose
    magnitude exceeds MAX_NUMBER, with where it stands inside (`.top_p`); None when there is none. A section inside is
    left to its own validation."""
    if isinstance(value, (bool, BaseModel)):
        return None
    if isinstance(value, (int, float)):
        return (where, value) if abs(value) > MAX_NUMBER else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    return next((bad for k, v in items if (bad := _out_of_bounds(v, f"{where}.{k}")) is not None), None)


class Section(BaseModel):
    """A table of the config: unknown keys are refused, and types are strict (a boolean is not a number, so
    `size = true` must not mean 1; ints still fill float fields). Every number is finite and bounded: TOML's `inf`
    and `nan` are refused in every field, and so is any number above MAX_NUMBER in magnitude (`1e308`), so a price, a
    budget, a count or a duration can never turn a cost into NaN, a product into inf or a wait into an overflow."""

    # hide_input_in_errors: a key pasted where a variable's name belongs is never said back, from Python either
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False, hide_input_in_errors=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _numbers_in_bounds(cls, value: Any) -> Any:
        # every field of every section, those a subclass adds included
        bad = _out_of_bounds(value)
        if bad is not None:
            inside = f" (at {bad[0].lstrip('.')})" if bad[0] else ""
            raise PydanticCustomError(
                "out_of_bounds",
                "must be a number of magnitude at most {bound}, got {got}{inside}",
                {"bound": f"{MAX_NUMBER:.0e}".replace("+", ""), "got": f"{bad[1]:g}", "inside": inside},
            )
        return value


# a config field that names a file or directory, a leading ~ expanded (refed_dspy.config.section); it may also take a name or
# URI that is not a path
UserPath = Annotated[str, AfterValidator(expand_home)]


def is_path(field: FieldInfo) -> bool:
    """The config field is a UserPath (alone, or optional)."""
    inner = [a for a in typing.get_args(field.annotation) if typing.get_origin(a) is Annotated]
    metadata = [*field.metadata, *(m for a in inner for m in a.__metadata__)]
    return any(isinstance(m, AfterValidator) and m.func is expand_home for m in metadata)


MAX_SECONDS = 7 * 24 * 3600  # a week: the longest wait a duration field takes (a clock's wait overflows near 300 years)

# a config field in seconds: a finite number (Section refuses inf and nan) of at most a week; each field says
# whether 0 means something (gt=0 or ge=0)
Seconds = Annotated[float, Field(le=MAX_SECONDS)]


def _model_name(value: str) -> str:
    if not value.strip():
        raise ValueError("needs a model name, e.g. 'openai/gpt-4o-mini'")
    if value != value.strip():
        raise ValueError(f"has spaces around the model name {value!r}")
    return value


# a config field that names a model as DSPy/LiteLLM takes it: never empty (an empty name reached the price lookup)
ModelName = Annotated[str, AfterValidator(_model_name)]


def http_endpoint(value: str) -> str:
    """`value` if it is an http(s) URL with a host (and a port that is a number), the way a config's `api_base` must be
    (an `ftp://` or a bare word used to be tried 25 times at run time, leaving a run dir behind), and with no user name
    or password in it (the run dir keeps its config); ValueError, with the URL it may have meant, otherwise."""
    if "@" in value:  # read before anything else: a password (which may hold / ? # or :) is never said back
        shown = without_password(value, whole=True)
        raise ValueError(
            f"carries a user name or password ({shown}), which would be written in the run's config.toml and "
            "records: give the server's key in an environment variable named by api_key_env"
        )
    if query_credentials(value):  # the same of a key in its query: never said back
        raise ValueError(
            f"carries a key in its query ({without_password(value)}), which would be written in the run's config.toml "
            "and records: give the server's key in an environment variable named by api_key_env"
        )
    try:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname and parts.port != 0:
            return value
        hint = f" (http://{value}?)" if value.strip() and "://" not in value else ""
    except ValueError as err:  # a port that is not a number, a bracket left open
        hint = f" ({str(err).lower()})"
    raise ValueError(
        f"must be an http:// or https:// URL with a host, e.g. http://localhost:8000/v1, got {value!r}{hint}"
    )


def without_password(url: str, whole: bool = False) -> str:
    """`url` with what stands before the `@` of its authority as `***` (a user name and password: a database's URI,
    `postgresql://user:secret@host/db`; `whole`: before its last `@` anywhere, as a password may hold `/`, `?`, `#`),
    and the value of each query parameter that carries a credential (`?api-key=***`)."""
    url = without_query_credentials(url)
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    authority = rest if whole else re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in authority:
        return url
    return f"{head}{sep}***@{rest[len(authority.rsplit('@', 1)[0]) + 1 :]}"


def mask_secrets(obj: Any, headers: bool = False) -> Any:
    """Replace values of secret-looking keys with '***' (in a table of `headers`, those of the headers that carry a
    credential), and the user name and password of a URL (defence in depth; keys never belong here)."""
    if isinstance(obj, dict):
        return {
            k: ("***" if v and _holds_secret(str(k), headers) else mask_secrets(v, str(k).lower().endswith("headers")))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [mask_secrets(v) for v in obj]
    return without_password(obj) if isinstance(obj, str) and "://" in obj else obj


def secret_values(obj: Any, headers: bool = False) -> list[str]:
    """The strings `mask_secrets` masks in `obj` (a URL's password aside), to be held for masking wherever they
    appear (refed_dspy.secrets)."""
    if isinstance(obj, list):
        return [s for v in obj for s in secret_values(v)]
    if not isinstance(obj, dict):
        return []
    found = []
    for k, v in obj.items():
        if isinstance(v, str) and v and _holds_secret(str(k), headers):
            found.append(v)
        else:
            found += secret_values(v, str(k).lower().endswith("headers"))
    return found


def _holds_secret(name: str, header: bool) -> bool:
    """Whether an entry named `name` (a header's name when `header`) holds a secret."""
    return (SECRET_NAME.search(name) is not None and name != "api_key_env") or (
        header and SECRET_HEADER.search(name) is not None
    )


def variable_name(value: str | None) -> str | None:
    """`value` if it names an environment variable (None or '': none); ValueError otherwise, without saying it back:
    what stands where a variable's name belongs may be the key itself, pasted there."""
    if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and underscores), not the key itself: put "
            "the key in a variable and name the variable here (what was given is not repeated, in case it is a key)"
        )
    return value


# a config field that names the environment variable a key is read from
VariableName = Annotated[str, AfterValidator(variable_name)]


class Registered:
    """A validator (`AfterValidator(Registered(METHODS))`) that accepts the names `registry` holds when the value is
    validated (so an entry registered after this module was imported counts, and the registry's package is imported
    on that first question, not before), refusing others as a Literal would, with the nearest name. A run dir's own
    config.toml (validated with context {"record": True}) is a record of what ran: any name reads there."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def __call__(self, value: str, info: ValidationInfo) -> str:
        if value in self.registry or (info.context or {}).get("record"):
            return value
        names = self.registry.names()
        near = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": one_of(names), "nearest": near}
        )


def one_of(names: tuple[str, ...]) -> str:
    """'a', 'b' or 'c': the choices, as pydantic names a Literal's."""
    quoted = [repr(n) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]]) if len(quoted) > 1 else "".join(quoted)
