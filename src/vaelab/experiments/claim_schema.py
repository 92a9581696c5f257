"""The types of a sweep file's ``claims:``, one per kind, checked by pydantic when the sweep
file loads (:func:`check_claims`), so that a misspelt key, a wrong type or a missing
effect-size floor is one clear line before anything trains, not an error when the study page
is written. What each kind means and how its verdict is reached: :mod:`.claims`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, TypeAdapter, ValidationError
from pydantic import model_validator

from ..errors import ConfigError


class _Claim(BaseModel):
    """The keys every claim may have."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str
    claim: str = ""
    show: list[str] = []
    sweeps: list[str] = []
    budgets: list[str] = []
    where: dict[str, Any] = {}


class _Numeric(_Claim):
    metric: Annotated[str, Field(min_length=1)]


class _WithFloor(_Numeric):
    """Claims that say two settings differ state the smallest difference that counts."""

    min_effect: NonNegativeFloat | None = None
    min_effect_rel: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _floor(self):
        if self.min_effect is None and self.min_effect_rel is None:
            raise ValueError("state its effect-size floor, min_effect (in the metric's units) or min_effect_rel "
                             "(a share of the means)")
        return self


class Trend(_WithFloor):
    kind: Literal["trend"]
    along: str
    expect: Literal["increasing", "decreasing"]


class Compare(_WithFloor):
    kind: Literal["compare"]
    first: dict[str, Any]
    second: dict[str, Any]
    expect: Literal["lower", "higher"]


class Best(_WithFloor):
    kind: Literal["best"]
    expect: dict[str, Any]
    goal: Literal["min", "max"] = "min"


class Similar(_Numeric):
    kind: Literal["similar"]
    first: dict[str, Any]
    second: dict[str, Any]
    tolerance: PositiveFloat = 0.01


class Bounds(BaseModel):
    """``value`` claims: ``above``, ``below`` or ``between: [low, high]``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    above: float | None = None
    below: float | None = None
    between: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None

    @model_validator(mode="after")
    def _one(self):
        if self.between is None and self.above is None and self.below is None:
            raise ValueError("expect needs above, below or between: [low, high]")
        if self.between is not None and not self.between[0] < self.between[1]:
            raise ValueError("expect.between needs [low, high] with low < high")
        return self


class Value(_Numeric):
    kind: Literal["value"]
    expect: Bounds


class Curve(_Numeric):
    kind: Literal["curve"]
    metric: Annotated[str, Field(pattern=r"^curve:.+")]
    expect: Literal["falls_then_rises"]
    tolerance: PositiveFloat = 0.01


class Rank(_Numeric):
    kind: Literal["rank"]
    reference: dict[str, float]
    min_effect: float = 0.5


class FigureCheck(BaseModel):
    """Somebody's look at a figure claim's figures."""

    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: Literal["holds", "does not hold", "inconclusive"]
    by: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]
    budget: str | None = None


class Figure(_Claim):
    kind: Literal["figure"]
    needs: str = "a figure"
    figure: str | list[str] = []
    along: str | None = None
    checked: FigureCheck | list[FigureCheck] | None = None


Claim = Annotated[Union[Trend, Compare, Best, Similar, Value, Curve, Rank, Figure], Field(discriminator="kind")]
KINDS = ("trend", "compare", "best", "similar", "value", "curve", "figure", "rank")
_CLAIM = TypeAdapter(Claim)


def check_claims(claims: Any, source: str = "the sweep file") -> list[Claim]:
    """The typed claims of a sweep file's ``claims:`` list.

    Raises:
        ConfigError: not a list of mappings, or a claim with an unknown kind, an unknown or
            missing key or a value of the wrong type (one line naming the claim and the key).
    """
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        raise ConfigError(f"{source}: claims must be a list of mappings, each with id, claim and kind")
    typed, seen = [], set()
    for index, claim in enumerate(claims):
        name = f"claim {claim.get('id', index + 1)!r}"
        if claim.get("kind") not in KINDS:
            raise ConfigError(f"{source}: {name}: kind must be one of {', '.join(KINDS)}, got {claim.get('kind')!r}")
        try:
            typed.append(_CLAIM.validate_python(claim))
        except ValidationError as exc:
            # the deepest error (of a union: the branch the value was meant for); loc[0] is the kind
            error = max(exc.errors(), key=lambda e: len(e["loc"]))
            where = ".".join(str(p) for p in error["loc"][1:] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))
            message = error["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{source}: {name}: {where + ': ' if where else ''}{message}") from None
        if claim["id"] in seen:
            raise ConfigError(f"{source}: {name} appears twice; give each claim its own id")
        seen.add(claim["id"])
    return typed
