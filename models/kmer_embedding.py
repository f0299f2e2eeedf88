"""`KmerEmbedding`: a learned vector per k bases, added to a DNA model's memory keys and queries (`kmer_embedding`).

Why: a memory key reads the layer input over the last few tokens through a linear projection and conv.
Over single-base embeddings that is a linear function of a 4-letter one-hot per lag, whose centred part
has rank at most 12 · 3 = 36 for 12 bases (30 directions measured after the SiLU), so keys of different
contexts overlap however wide the head. Adding a vector for the k-mer ending at each token to the query and key
projections (before the conv) gives them about 100 directions in a head of 128 (103 measured). Values and
the residual stream keep the bases alone: a value made of k-mer vectors would be a random code of the
k-mer, from which the layers after the memory would have to learn to recover the base.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BASES = 4  # the dna tokenizer's ids 0–3 are A, C, G, T; N and the specials come after
# Beside key channels of about unit size under the induction init (W_K at std d_model^-½), so the k-mer
# dominates a key; under the random init (std 0.02) it outweighs the bases' part about 13 to 1.
INIT_STD = 3.0
TAIL_KEY = "kmer.tail"  # in the first layer's state: the last k − 1 token ids before the next call


def kmer_indices(ids: Tensor, k: int) -> Tensor:
    """Row of each k-mer of ids [B, T + k − 1] (the k − 1 ids before the call, then the call's): [B, T].

    A k-mer of bases is its base-4 number, oldest base first; any other id in it (N, a special, the
    start of the stream) gives row 4^k.
    """
    windows = ids.unfold(1, k, 1)  # [B, T, k]
    powers = BASES ** torch.arange(k - 1, -1, -1, device=ids.device)
    code = (windows * powers).sum(-1)
    return torch.where((windows < BASES).all(-1), code, BASES**k)


class KmerEmbedding(nn.Module):
    def __init__(self, k: int, width: int):
        super().__init__()
        self.k = k
        self.table = nn.Embedding(BASES**k + 1, width)  # width: a memory's heads × head width
        nn.init.normal_(self.table.weight, std=INIT_STD)

    def init_tail(self, batch_size: int, device: torch.device) -> Tensor:
        """A fresh stream's tail: no bases yet, so its first k − 1 k-mers take the unknown row."""
        return torch.full((batch_size, self.k - 1), BASES, dtype=torch.int64, device=device)

    def forward(self, tokens: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """The k-mer vectors for tokens [B, T] after `tail` [B, k − 1], and the next call's tail."""
        ids = torch.cat([tail, tokens], dim=1)
        return self.table(kmer_indices(ids, self.k)), ids[:, ids.shape[1] - (self.k - 1) :]
