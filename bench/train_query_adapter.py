"""Train the query-side linear adapter (issue 13's learned lever) into bench/out/query_adapter.npy.

A 384×384 map M applied to MiniLM query vectors only (q' = normalize(q M)); documents keep their
vectors, so an index never has to be re-embedded, and the matrix (~0.6 MB) could ship in the package.
It did not win on the paraphrase dev set (bench/README.md), so it is not shipped; this script and
bench/paraphrase_study.py (--adapter) reproduce the measurement.

  pairs     every HF paper's title and (when it has one) ai_summary → that paper's first-chunk vector
            (title + abstract, embedded as the index embeds it); ~9.6k titles + ~5.7k summaries;
  held out  every paper of bench/data/paraphrase_questions.jsonl and of both ai_summary evaluation
            samples (seeds 13 and 29) — none of their queries is a training query — plus 5 % of the
            remaining papers for validation (early stopping);
  loss      softmax cross-entropy of each query against all ~10.5k corpus papers (temperature τ),
            plus λ‖M − I‖², starting from the identity (the adapter starts as plain MiniLM).

    nice -n 10 .venv/bin/python bench/train_query_adapter.py [--epochs 12] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

import numpy as np
from common import OUT
from embedding_cache import CachedEmbedder
from retrieval_corpus import ai_summary_queries, load_corpus, paraphrase_questions

DEFAULT_OUT = OUT / "query_adapter.npy"


def recall_at_1(queries: np.ndarray, targets: np.ndarray, docs: np.ndarray, m: np.ndarray) -> float:
    q = queries @ m
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    hits = 0
    for start in range(0, len(q), 1024):
        best = np.argmax(q[start : start + 1024] @ docs.T, axis=1)
        hits += int((best == targets[start : start + 1024]).sum())
    return hits / len(q)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--reg", type=float, default=1e-3, help="λ of λ‖M − I‖²")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    from bot.retrieval.embedding import LocalEmbedder

    torch.manual_seed(args.seed)
    embedder = CachedEmbedder(LocalEmbedder())
    corpus = await load_corpus(embedder)
    held_out = {row for _, rows in paraphrase_questions(corpus) for row in rows}
    test = ai_summary_queries(corpus, 500, 13)
    test_ids = frozenset(corpus.papers[next(iter(e))].paper_id for _, e in test)
    dev = ai_summary_queries(corpus, 500, 29, exclude=test_ids)
    held_out |= {row for _, rows in [*test, *dev] for row in rows}

    hf_rows = [row for row, p in enumerate(corpus.papers) if corpus.hf[row] and row not in held_out]
    random.Random(args.seed).shuffle(hf_rows)
    n_val = len(hf_rows) // 20
    splits = {"val": hf_rows[:n_val], "train": hf_rows[n_val:]}
    pairs: dict[str, list[tuple[str, int]]] = {}
    for name, rows in splits.items():
        pairs[name] = [(" ".join(corpus.papers[r].title.split()), r) for r in rows]
        pairs[name] += [(corpus.papers[r].ai_summary, r) for r in rows if corpus.papers[r].ai_summary]
    print(
        f"papers: {len(corpus.papers)}; held out (evaluation): {len(held_out)}; "
        f"training pairs: {len(pairs['train'])}, validation pairs: {len(pairs['val'])}",
        flush=True,
    )
    started = time.perf_counter()
    vectors = {name: embedder.encode_queries([t for t, _ in p]) for name, p in pairs.items()}
    print(f"query vectors: {time.perf_counter() - started:.0f} s", flush=True)
    targets = {name: np.array([r for _, r in p]) for name, p in pairs.items()}
    docs = corpus.dense[corpus.first_chunk_rows()]

    identity = np.eye(docs.shape[1], dtype=np.float32)
    print(f"validation R@1 (all papers as candidates), plain MiniLM: "
          f"{recall_at_1(vectors['val'], targets['val'], docs, identity):.4f}", flush=True)  # fmt: skip

    m = torch.nn.Parameter(torch.eye(docs.shape[1]))
    optimizer = torch.optim.Adam([m], lr=args.lr)
    doc_t = torch.from_numpy(docs)
    q_train = torch.from_numpy(vectors["train"])
    y_train = torch.from_numpy(targets["train"])
    best = (recall_at_1(vectors["val"], targets["val"], docs, identity), identity.copy(), 0)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(q_train))
        total = 0.0
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            q = torch.nn.functional.normalize(q_train[batch] @ m, dim=1)
            logits = q @ doc_t.T / args.temperature
            loss = torch.nn.functional.cross_entropy(logits, y_train[batch])
            loss = loss + args.reg * ((m - torch.eye(m.shape[0])) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        current = m.detach().numpy().copy()
        val = recall_at_1(vectors["val"], targets["val"], docs, current)
        print(f"epoch {epoch}: loss {total / len(order):.4f}, validation R@1 {val:.4f}", flush=True)
        if val > best[0]:
            best = (val, current, epoch)
    val, matrix, epoch = best
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, matrix.astype(np.float32))
    embedder.save()
    print(
        f"kept epoch {epoch} (validation R@1 {val:.4f}); wrote {args.out} ({args.out.stat().st_size} bytes)"
    )


if __name__ == "__main__":
    asyncio.run(main())
