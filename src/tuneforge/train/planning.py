"""`tuneforge plan CONFIG`: the run's memory and speed, planned from its config alone (no weights).

The model stage's planner sizes one sequence batch; the run's recipe says how many sequences a data row
costs (2 for a preference pair), and `train.max_length: auto` is resolved from the data (tokenizer only).

    plan = plan_run(load_config("examples/mistral7b_qlora_chatdoctor.yaml"), gpu="A10G", gpus=1)
"""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.config.schema import RunConfig
from tuneforge.errors import TuneforgeError
from tuneforge.model.plan import DEVICES, Plan, Setup, make_plan
from tuneforge.train.distributed import resolve_strategy
from tuneforge.train.methods import check_method, recipe_for
from tuneforge.train.preview import resolved_max_length


def plan_run(
    config: RunConfig, gpu: str | None, gpus: int, notice: Callable[[str], None] | None = None
) -> Plan:
    if gpu is not None and gpu not in DEVICES:
        raise TuneforgeError(f"--gpu {gpu!r}: choose one of {', '.join(DEVICES)}")
    check_method(config)
    train, recipe = config.train, recipe_for(config.train.method)
    if recipe.sequences_per_row > 1:  # e.g. one forward scores chosen and rejected: 2 sequences a pair
        train = train.model_copy(update={"batch_size": recipe.sequences_per_row * train.batch_size})
        (notice or (lambda text: None))(
            f"{recipe.name}: planned as {train.batch_size} sequences per batch "
            f"({recipe.sequences_per_row} per row)"
        )
    strategy = resolve_strategy(config.distributed, gpus)
    if strategy == "deepspeed":
        strategy = f"deepspeed-zero{config.distributed.zero_stage}"
    setup = Setup(config.model, config.quant, config.lora, train)
    seq, rollouts = resolved_max_length(config), recipe.rollouts(config)
    if rollouts:  # a training sequence is a prompt and its sampled completion
        seq += rollouts.new_tokens
    return make_plan(setup, seq, gpu or "cpu", gpus, strategy, rollouts)
