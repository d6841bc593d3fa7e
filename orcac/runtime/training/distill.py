"""`objective = distill`: the student learns the prompted teacher's next-token distributions.

    train { objective = distill   distill { teacher = t  beta = 0.5  on_policy = 0.0 } ... }

Context distillation on logits (Snell et al. 2022): the teacher is a local model shown what
build showed it (the strategy's system text and demonstrations, then the task's prompt:
orcac.runtime.answers.erasure.teacher_messages); the student is shown its record (the erase
message, then the same prompt). Both are followed by the same answer tokens, and the loss is
a divergence between their next-token distributions at each answer token:

- off-policy, on the teacher's kept answers (the build's records);
- on-policy where `on_policy` > 0: that share of batches replace the answers by ones the
  student samples from its own erased prompt (GKD's lambda; on-policy self-distillation with
  a teacher-only context, Shenfeld et al. 2026).

`objective = sft+distill` adds the usual cross-entropy on the answer tokens.

What is TRL's and what is ours. The divergence is TRL's own
(`trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`: beta = 0 is the forward KL(teacher ||
student), 1 the reverse, between them the generalized JSD of GKD, Agarwal et al. 2024), and
the on-policy share is its lambda. The trainers do not fit: GKDTrainer runs teacher and student
on the same `input_ids`, while here the teacher's prompt is longer and different (a
teacher-only context), so only the answer tokens line up; SDFTTrainer
(`trl.experimental.sdft`) has a teacher-only context, but builds it by formatting a string
into the user's turn (`teacher_prompt_template`), not as a system turn with demonstrations as
earlier turns, and it samples the completions on every step (from the student, or the
teacher with `generate_from_teacher`: a GRPO-style trainer over prompts), so it cannot train
on the build's kept answers, those that passed the task's accept rules. What is written here is the pairing: each example
is the teacher's context and the student's, ending in the same answer tokens, left-padded so
the answers line up at the right end of both batches, and only those positions go through the
vocabulary head (`logits_to_keep`). The teacher must share the student's tokenizer (one
vocabulary); it is loaded like the student (the same chat template and added tokens).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass

from orcac.errors import OrcacError
from orcac.runtime.answers.erasure import teacher_messages
from orcac.runtime.models import chat_format
from orcac.runtime.models.chat_format import IGNORE


@dataclass(frozen=True)
class Pair:
    """One example: the student's and the teacher's token ids, ending in the same answer."""

    input_ids: list[int]  # the erase message, the prompt, the answer
    teacher_input_ids: list[int]  # the strategy's system text, its demonstrations, the prompt, the answer
    answer_tokens: int


def encode_pair(tokenizer, plan, row: dict, max_length: int) -> Pair:
    """The student's record and the teacher's context for one (task, user, assistant) row."""
    task = plan.tasks[row["task"]]
    if task.strategy is None:
        raise OrcacError(
            f"task {row['task']}: its answers are the source's, not a strategy's, so there is no teacher context to distill",
            hint="train it with objective = sft, in a stage of its own",
        )
    student = chat_format.encode(
        tokenizer, plan.erase[task.erase].system, row["user"], row["assistant"], max_length=max_length
    )
    answer = student.input_ids[student.prompt_tokens :]
    return Pair(student.input_ids, teacher_prompt_ids(tokenizer, plan, task, row["user"]) + answer, len(answer))


def teacher_prompt_ids(tokenizer, plan, task, user: str) -> list[int]:
    shown = teacher_messages(plan, task.strategy, user, task.system)
    text = tokenizer.apply_chat_template(list(shown), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def collate(pad_token_id: int):
    """Left-pad the student's and the teacher's sequences: every answer ends at the right edge.

    Position ids restart after the padding (transformers would otherwise count the pads), and
    `labels` holds the answer tokens (IGNORE elsewhere): the Trainer counts them for the loss's
    denominator across gradient accumulation."""
    import torch

    def left_pad(rows: list[list[int]]):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)

    def call(examples: list[dict]) -> dict:
        ids, mask, positions = left_pad([e["input_ids"] for e in examples])
        t_ids, t_mask, t_positions = left_pad([e["teacher_input_ids"] for e in examples])
        answer = torch.tensor([e["answer_tokens"] for e in examples], dtype=torch.long)
        labels = torch.full_like(ids, IGNORE)
        for i, n in enumerate(answer.tolist()):
            if n:
                labels[i, -n:] = ids[i, -n:]
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            "labels": labels,
            "teacher_input_ids": t_ids,
            "teacher_attention_mask": t_mask,
            "teacher_position_ids": t_positions,
            "answer_tokens": answer,
        }

    return call


def answer_logits(model, ids, mask, positions, width: int):
    """The logits that predict the last `width` tokens of each (left-padded) row."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1, use_cache=False)
    return out.logits[:, :-1].float()


def generalized_jsd():
    """TRL's divergence (GKDTrainer.generalized_jsd_loss); imported quietly (trl.experimental warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDTrainer
    return GKDTrainer.generalized_jsd_loss


def distill_loss(student, teacher, inputs: dict, *, beta: float, sft: bool = False, num_items_in_batch=None):
    """(loss, divergence): the divergence between teacher and student over the answer tokens
    (summed, over `num_items_in_batch` or, without it, their count), plus the cross-entropy on
    them where `sft`."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    width = max(1, int(inputs["answer_tokens"].max()))
    targets = labels[:, -width:]
    count = (targets != IGNORE).sum()
    if num_items_in_batch is None:
        num_items_in_batch = count.clamp(min=1)
    student_logits = answer_logits(
        student, inputs["input_ids"], inputs["attention_mask"], inputs["position_ids"], width
    )
    with torch.no_grad():
        teacher_logits = answer_logits(
            teacher,
            inputs["teacher_input_ids"],
            inputs["teacher_attention_mask"],
            inputs["teacher_position_ids"],
            width,
        )
    if teacher_logits.size(-1) != student_logits.size(-1):
        raise OrcacError(
            f"the distill teacher has {teacher_logits.size(-1)} tokens in its vocabulary, the student {student_logits.size(-1)}",
            hint="distill from a teacher with the student's tokenizer (the same base model, or one of its family)",
        )
    # Only the answer tokens, as one row: a shorter answer's row starts with prompt positions,
    # and the divergence costs a few vocabulary-sized tensors per position (the mixture's).
    answer = targets != IGNORE
    student_logits, teacher_logits, targets = (
        student_logits[answer][None],
        teacher_logits[answer][None],
        targets[answer],
    )
    divergence = generalized_jsd()(student_logits, teacher_logits, beta=beta, num_items_in_batch=num_items_in_batch)
    loss = divergence
    if sft:
        cross = F.cross_entropy(student_logits[0], targets, reduction="sum")
        loss = loss + cross / (
            num_items_in_batch.to(cross.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        )
    return loss, divergence


# ---- the teacher --------------------------------------------------------------------------


def teacher_model_name(plan) -> str:
    """What orcac.runtime.models.loading understands for the distill teacher's model."""
    from orcac.runtime.models.loading import local_teacher_weights

    name = plan.teachers[plan.train.distill.teacher].model
    return local_teacher_weights(name) if name.startswith("local/") else name


def load_teacher(plan, root, tokenizer, load_student):
    """The teacher, frozen, in eval mode, loaded as the student is (`load_student`: the same
    chat template and added tokens); refused in one line where its vocabulary differs."""
    teacher_plan = plan.teachers[plan.train.distill.teacher]
    student = plan.students[plan.train.student]
    model, teacher_tokenizer = load_student(student.model_copy(update={"model": teacher_model_name(plan)}), root)
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise OrcacError(
            f"distill teacher '{teacher_plan.name}' ({teacher_plan.model}) has another tokenizer than the student",
            hint="token distributions compare only over one vocabulary: distill from the same base model or one with its tokenizer",
        )
    model.eval()
    model.requires_grad_(False)
    return model


# ---- the trainer --------------------------------------------------------------------------


def make_trainer(model, tokenizer, rows, *, plan, teacher, config, callbacks=(), peft_config=None):
    """A transformers Trainer whose loss is `distill_loss` over (student, teacher) pairs."""
    import datasets
    import torch
    from transformers import Trainer

    tp = plan.train
    pairs = [encode_pair(tokenizer, plan, row, tp.max_length) for row in rows]
    dataset = datasets.Dataset.from_dict(
        {
            "input_ids": [p.input_ids for p in pairs],
            "teacher_input_ids": [p.teacher_input_ids for p in pairs],
            "answer_tokens": [p.answer_tokens for p in pairs],
        }
    )
    config.remove_unused_columns = False  # the teacher's columns are not the model's arguments
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    collator = collate(tokenizer.pad_token_id)
    settings = tp.distill
    sft = tp.objective == "sft+distill"
    on_policy_draws = random.Random(tp.seed)  # which batches are on-policy: the same every run
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}

    class DistillTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.model_accepts_loss_kwargs:
                num_items_in_batch = None
            if model.training and settings.on_policy > 0 and on_policy_draws.random() < settings.on_policy:
                inputs = self._student_answers(model, inputs)
                num_items_in_batch = None  # the new answers have their own count
            teacher.to(inputs["input_ids"].device)
            loss, divergence = distill_loss(
                model, teacher, inputs, beta=settings.beta, sft=sft, num_items_in_batch=num_items_in_batch
            )
            return (loss, None) if return_outputs else loss

        def _track_num_input_tokens(self, inputs):
            # train_steps.tokens counts the student's tokens, as SFT's does: transformers' "all"
            # would count the left padding of every row too (the teacher's are not counted)
            seen = torch.as_tensor(int(inputs["attention_mask"].sum()), device=self.args.device, dtype=torch.int64)
            self.state.num_input_tokens_seen += self.accelerator.gather(seen).sum().item()

        def _student_answers(self, model, inputs):
            """The batch with each answer replaced by one the student samples from its own prompt."""
            device = inputs["input_ids"].device
            examples = []
            for i, n in enumerate(inputs["answer_tokens"].tolist()):
                ids = inputs["input_ids"][i][inputs["attention_mask"][i].bool()].tolist()
                t_ids = inputs["teacher_input_ids"][i][inputs["teacher_attention_mask"][i].bool()].tolist()
                examples.append((ids[: len(ids) - n], t_ids[: len(t_ids) - n]))
            prompts = collator([{"input_ids": s, "teacher_input_ids": t, "answer_tokens": 0} for s, t in examples])
            unwrapped = self.accelerator.unwrap_model(model)
            was_training = unwrapped.training
            unwrapped.eval()
            with torch.no_grad():
                out = unwrapped.generate(
                    input_ids=prompts["input_ids"].to(device),
                    attention_mask=prompts["attention_mask"].to(device),
                    max_new_tokens=max(1, int(inputs["answer_tokens"].max())),
                    do_sample=True,
                    temperature=1.0,
                    top_p=1.0,
                    pad_token_id=tokenizer.pad_token_id,
                    use_cache=True,
                )
            unwrapped.train(was_training)
            sampled = out[:, prompts["input_ids"].size(1) :].tolist()
            rebuilt = []
            for (s, t), answer in zip(examples, sampled):
                end = next((k + 1 for k, token in enumerate(answer) if token in stop_ids), len(answer))
                answer = answer[:end]
                rebuilt.append({"input_ids": s + answer, "teacher_input_ids": t + answer, "answer_tokens": len(answer)})
            return {name: value.to(device) for name, value in collator(rebuilt).items()}

    return DistillTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
