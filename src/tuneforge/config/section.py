"""The base of every config section: unknown keys are errors, assignments are validated, and numbers
must be finite (`.inf` or `.nan` in YAML would otherwise pass `gt=0` and fail deep inside training)."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
