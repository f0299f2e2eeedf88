"""Regenerate the sample inputs of the README from the repo's seeded generators (nothing downloaded).

    python samples/make_samples.py

notes.txt       4 KiB of held-out haystack text (CPython's own docs) with a fact planted 1,450 bytes before
                its end, asked in questions.txt; answers.json has the planted value. (`text-tiny` answers
                one such fact reliably, several of the same form only sometimes: its model card measures both.)
genome.fa       a 120 kb synthetic genome whose bases 20,000–25,000 are copied again at 75,000 (50 kb later),
                and a 4 kb second record
first_copy.fa   that first copy alone: ingest it, then score genome.fa against the memory
second_copy.fa  the copy at 75,000 alone: scored against that memory, it is low from its first bases
variants.vcf    SNVs, an insertion, a deletion and a multi-allelic site on genome.fa (one symbolic ALT)
"""

from __future__ import annotations

import json
from pathlib import Path

from titans_cli.tasks import make_genome, make_niah
from titans_cli.tasks.niah import niah_question

HERE = Path(__file__).parent
NOTES_CHARS = 4096
SEGMENT = (20_000, 25_000)
COPY_AT = 75_000


def fasta(records: list[tuple[str, bytes]]) -> str:
    out = []
    for name, seq in records:
        out.append(f">{name}")
        out += [seq[i : i + 70].decode() for i in range(0, len(seq), 70)]
    return "\n".join(out) + "\n"


def main() -> None:
    notes = make_niah(NOTES_CHARS, seed=7, variant="single", needle="number", split="eval")
    (HERE / "notes.txt").write_text(notes.document)
    question = niah_question("single", "number", notes.meta["key"])
    (HERE / "questions.txt").write_text(question + "\n")
    (HERE / "answers.json").write_text(json.dumps({question: notes.answer}, indent=2) + "\n")

    genome = bytearray(make_genome(120_000, seed=11).sequence)
    start, end = SEGMENT
    genome[COPY_AT : COPY_AT + end - start] = genome[start:end]
    second = make_genome(4_000, seed=12).sequence
    (HERE / "genome.fa").write_text(fasta([("chrS", bytes(genome)), ("chrT", second)]))
    (HERE / "first_copy.fa").write_text(fasta([("chrS_20000_25000", bytes(genome[start:end]))]))
    copy_end = COPY_AT + end - start
    (HERE / "second_copy.fa").write_text(fasta([(f"chrS_{COPY_AT}_{copy_end}", bytes(genome[COPY_AT:copy_end]))]))

    def base(pos: int) -> str:  # 1-based
        return chr(genome[pos - 1])

    other = {b: next(x for x in "ACGT" if x != b) for b in "ACGT"}
    rows = [
        ("chrS", 1_500, "snv1", base(1_500), other[base(1_500)]),
        ("chrS", 22_000, "in_repeat", base(22_000), other[base(22_000)]),
        ("chrS", 40_000, "ins1", base(40_000), base(40_000) + "GATTACA"),
        ("chrS", 60_000, "del1", bytes(genome[59_999:60_006]).decode(), base(60_000)),
        ("chrS", 90_000, "multi", base(90_000), f"{other[base(90_000)]},<DEL>"),
    ]
    header = ("##fileformat=VCFv4.2\n##source=titans samples/make_samples.py\n"
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")  # fmt: skip
    body = "".join(f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t.\n" for c, p, i, r, a in rows)
    (HERE / "variants.vcf").write_text(header + body)


if __name__ == "__main__":
    main()
