"""How packed records are laid out in a training batch: one pack per row.

TRL's best-fit-decreasing packing lays a batch's packs end to end in a single row
("padding-free"), which is right for flash-attention's variable-length kernels. Everywhere else
(sdpa or eager attention: every CPU, and a GPU without flash-attn) transformers isolates the
examples of a row with a block-diagonal mask over the whole row, so attention costs the square
of the *batch's* tokens: 8 packs of 512 make one 4,096-token row, 64x the attention of one pack,
8x that of eight rows. Measured on the demo's 135M student on two cores (BENCHMARKS.md): about
half of a training step. So here each pack is its own row, padded to the longest pack of the
batch (bfd packs are nearly full: a few percent of padding), with position ids that restart at
every example and no attention mask, from which transformers builds the same isolation per row.
"""

from __future__ import annotations


def uses_varlen_attention(model) -> bool:
    """Whether the model attends with flash-attention's variable-length kernels (padding-free wins)."""
    implementation = str(getattr(model.config, "_attn_implementation", "") or "")
    return "flash" in implementation


def pack_rows_collator(pad_token_id: int):
    """A collator for TRL's packed dataset: one pack per row, right-padded, position ids per example."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class PackRows(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            batch = super().torch_call(examples)
            # With a mask, transformers would let the examples of a row attend to each other;
            # without one it reads the isolation from the position ids. Padding (position 0,
            # label -100) is then a run of one-token sequences that nothing attends to.
            batch.pop("attention_mask", None)
            return batch

    return PackRows(pad_token_id=pad_token_id, padding_free=False, return_position_ids=True)


def real_tokens(position_ids) -> int:
    """The tokens of the examples in a batch of pack rows, without the right padding (a row's
    trailing run of position 0: an example's last token never has position 0)."""
    import torch

    inside = position_ids != 0
    width = inside.size(1)
    lengths = torch.where(inside.any(dim=1), width - inside.flip(1).int().argmax(dim=1), 0)
    return int(lengths.sum())
