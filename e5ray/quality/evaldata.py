"""Labelled retrieval sets for `e5ray eval`: pairs files, the BEIR layout, the shipped set.

Whatever the input, an EvalSet is one pool of passages (every passage of the input; each
query is ranked against all of them) and per query the graded relevance of the passages
judged for it. Queries without a relevant passage (no grade > 0) are left out and counted,
as trec_eval and BEIR do: they would score 0 whatever the model does.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SHIPPED = "e5ray/data/pairs.jsonl"
PAIR_FORMATS = (".jsonl", ".parquet")


@dataclass
class EvalSet:
    """Queries, the passage pool, and per query {passage index: grade}."""

    source: str
    query_ids: list[str]
    queries: list[str]
    passage_ids: list[str]
    passages: list[str]
    judgments: list[dict[int, float]]
    query_langs: list[str | None] = field(default_factory=list)
    dropped_queries: int = 0

    def summary(self) -> dict[str, Any]:
        langs = sorted({lang for lang in self.query_langs if lang})
        return {
            "source": self.source,
            "queries": len(self.queries),
            "passages": len(self.passages),
            "judgments": sum(len(j) for j in self.judgments),
            "queries_without_relevant_passage": self.dropped_queries,
            "query_languages": langs,
        }


def load_eval_set(path: str | Path | None = None, split: str = "test") -> EvalSet:
    """The shipped pairs (None), a BEIR directory, or a pairs file (.jsonl or .parquet)."""
    if path is None:
        with resources.as_file(resources.files("e5ray") / "data" / "pairs.jsonl") as shipped:
            evalset = load_pairs(shipped)
        evalset.source = SHIPPED
        return evalset
    path = Path(path)
    if path.is_dir():
        return load_beir(path, split)
    if not path.is_file():
        raise FileNotFoundError(f"eval data {path} does not exist (expected a pairs file or a BEIR directory)")
    return load_pairs(path)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table_rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return table_rows
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not a JSON object ({exc})") from None
        return rows
    raise ValueError(f"unknown pairs format {path.suffix!r} for {path}; valid: {', '.join(PAIR_FORMATS)}")


def load_pairs(path: str | Path) -> EvalSet:
    """Rows of (query, passage[, relevance][, qid][, pid][, query_lang]).

    Queries are the same query when their qid (else their text) is; passages likewise by
    pid (else text). `relevance` defaults to 1; rows graded 0 add a judged non-relevant
    passage to the pool."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path} holds no pairs")
    for number, row in enumerate(rows, 1):
        missing = [c for c in ("query", "passage") if not isinstance(row.get(c), str) or not row[c].strip()]
        if missing:
            raise ValueError(
                f"{path}: row {number} lacks a non-empty {' and '.join(missing)} "
                f"(columns present: {sorted(row)}; required: query, passage; optional: relevance, qid, pid, query_lang)"
            )
    query_index: dict[str, int] = {}
    passage_index: dict[str, int] = {}
    out = EvalSet(str(path), [], [], [], [], [])
    for number, row in enumerate(rows, 1):
        qkey = str(row["qid"]) if row.get("qid") is not None else row["query"]
        pkey = str(row["pid"]) if row.get("pid") is not None else row["passage"]
        if qkey not in query_index:
            query_index[qkey] = len(out.queries)
            out.query_ids.append(qkey)
            out.queries.append(row["query"])
            out.query_langs.append(row.get("query_lang"))
            out.judgments.append({})
        if pkey not in passage_index:
            passage_index[pkey] = len(out.passages)
            out.passage_ids.append(pkey)
            out.passages.append(row["passage"])
        elif out.passages[passage_index[pkey]] != row["passage"]:
            raise ValueError(f"{path}: row {number}: pid {pkey!r} appears with two different passage texts")
        grade = row.get("relevance")
        out.judgments[query_index[qkey]][passage_index[pkey]] = 1.0 if grade is None else float(grade)
    return _drop_unanswerable(out)


def load_beir(directory: str | Path, split: str = "test") -> EvalSet:
    """BEIR layout: corpus.jsonl (_id, title, text), queries.jsonl (_id, text), qrels/<split>.tsv.

    Passages are `title text` (the title first when there is one); queries not in the
    qrels are not evaluated."""
    root = Path(directory)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for needed in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not needed.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
            raise FileNotFoundError(f"BEIR layout: {needed} is missing (qrels splits present: {splits or 'none'})")
    out = EvalSet(f"{root} ({split})", [], [], [], [], [])
    passage_index: dict[str, int] = {}
    for doc in _read_rows(root / "corpus.jsonl"):
        pid = str(doc["_id"])
        title, text = (doc.get("title") or "").strip(), (doc.get("text") or "").strip()
        passage_index[pid] = len(out.passages)
        out.passage_ids.append(pid)
        out.passages.append(f"{title} {text}".strip() if title else text)
    query_text = {str(q["_id"]): q["text"] for q in _read_rows(root / "queries.jsonl")}
    query_index: dict[str, int] = {}
    with qrels_path.open(encoding="utf-8", newline="") as fh:
        for number, record in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not record or (number == 1 and not _is_number(record[-1])):
                continue  # blank line or the "query-id corpus-id score" header
            if len(record) != 3:
                raise ValueError(f"{qrels_path}:{number}: expected query-id, corpus-id, score; got {record}")
            qid, pid, score = record
            if qid not in query_text:
                raise ValueError(f"{qrels_path}:{number}: query {qid!r} is not in queries.jsonl")
            if pid not in passage_index:
                raise ValueError(f"{qrels_path}:{number}: passage {pid!r} is not in corpus.jsonl")
            if qid not in query_index:
                query_index[qid] = len(out.queries)
                out.query_ids.append(qid)
                out.queries.append(query_text[qid])
                out.query_langs.append(None)
                out.judgments.append({})
            out.judgments[query_index[qid]][passage_index[pid]] = float(score)
    return _drop_unanswerable(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drop_unanswerable(evalset: EvalSet) -> EvalSet:
    keep = [i for i, judged in enumerate(evalset.judgments) if any(g > 0 for g in judged.values())]
    if not keep:
        raise ValueError(f"{evalset.source}: no query has a relevant passage (relevance > 0)")
    evalset.dropped_queries = len(evalset.queries) - len(keep)
    evalset.query_ids = [evalset.query_ids[i] for i in keep]
    evalset.queries = [evalset.queries[i] for i in keep]
    evalset.query_langs = [evalset.query_langs[i] for i in keep]
    evalset.judgments = [evalset.judgments[i] for i in keep]
    return evalset
