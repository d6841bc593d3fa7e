"""The trained student's folder under `train { output }`: one place for its names, read by
train (which writes it), eval (which loads final/ and writes the model card into it) and
the tests.

    output/
      final/             the trained model, tokenizer, plan.yaml, plan.sha256, README.md (card)
      stages/NN-name/    one per stage: its checkpoints, stage.json, and its final/ while needed
      train_state.json   the run (id, plan hash, --max-steps) and whether it finished
"""

from __future__ import annotations

from pathlib import Path

FINAL_DIR = "final"  # under TrainPlan.output: the trained model, tokenizer, plan.yaml, plan.sha256
STAGES_DIR = "stages"  # under TrainPlan.output: one directory per stage, with its checkpoints
STATE_FILE = "train_state.json"  # under TrainPlan.output: the run (id, plan hash, --max-steps) and whether it finished
STAGE_FILE = "stage.json"  # under a stage's directory: what it trained, for which run


def stage_dir(output: Path, index: int, stage_name: str) -> Path:
    """`output/stages/NN-name`: stage `index` (from 0) of the train block's `output` folder."""
    return output / STAGES_DIR / f"{index + 1:02d}-{stage_name}"
