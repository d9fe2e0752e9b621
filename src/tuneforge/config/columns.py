"""Where a run's rows come from and how their columns are named: `data.columns` and the sources of
`data.mix`, each read into one of the row shapes (data/shapes.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.section import Section


class ColumnsConfig(Section):
    instruction: str = Field("instruction", description="alpaca: the instruction column.")
    input: str = Field(
        "input", description="alpaca: the optional input/context column (may be absent or empty)."
    )
    output: str = Field("output", description="alpaca: the answer column.")
    prompt: str = Field("prompt", description="prompt_completion: the prompt column.")
    completion: str = Field("completion", description="prompt_completion: the completion column.")
    messages: str = Field("messages", description="messages: the column holding [{role, content}, ...].")
    conversations: str = Field(
        "conversations", description="sharegpt: the column holding [{from, value}, ...]."
    )
    text: str = Field("text", description="text: the column of plain documents (continued pretraining).")
    tools: str = Field(
        "tools", description="messages, sharegpt: the column of tool schemas a row offers, if any."
    )
    chosen: str = Field("chosen", description="preference pairs: the preferred answer column.")
    rejected: str = Field("rejected", description="preference pairs: the dispreferred answer column.")
    label: str = Field("label", description="kto: the column saying whether the completion is desirable.")


Shape = Literal["auto", "alpaca", "prompt_completion", "messages", "sharegpt", "text"]


class SourceConfig(Section):
    path: str = Field(description="A file, a saved datasets folder, or a hub id, as data.path.")
    completion_path: str | None = Field(
        None,
        description="A text file whose line N is the completion of line N of path, as data.completion_path.",
    )
    weight: float = Field(1.0, gt=0, description="Row multiplier: 2 uses every row twice, 0.5 a seeded half.")
    hub_config: str | None = Field(None, description="Hub dataset configuration name.")
    split: str = Field("train", description="Split to read.")
    format: Shape = Field("auto", description="This source's row shape.")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig, description="This source's column names.")
    prompt_format: str | None = Field(None, description="This source's prompt format string.")
