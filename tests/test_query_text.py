"""Query cleaning: the asking frame of a question goes, the words that describe papers stay."""

from __future__ import annotations

import pytest

from bot.retrieval.query_text import clean_question


@pytest.mark.parametrize(
    ("question", "cleaned"),
    [
        (
            "Which paper feeds the model's own draft answer back into retrieval?",
            "feeds the model's own draft answer back into retrieval?",
        ),
        ("Is there work that builds biomedical training sets?", "builds biomedical training sets?"),
        ("Are there any papers on graph reachability?", "graph reachability?"),
        ("How can one speed up LLM inference on CPUs?", "speed up LLM inference on CPUs?"),
        ("I'm looking for a survey of dense retrieval", "survey of dense retrieval"),
        ("Give me a review of recurrent networks", "review of recurrent networks"),
        ("Where can I find a leaderboard for BEIR?", "leaderboard for BEIR?"),
        ("Can I switch from Adam to Muon when fine-tuning?", "switch from Adam to Muon when fine-tuning?"),
        # Words that name a paper go anywhere in the question.
        ("diffusion papers about video editing", "diffusion about video editing"),
    ],
)
def test_the_asking_frame_is_dropped(question: str, cleaned: str) -> None:
    assert clean_question(question) == cleaned


@pytest.mark.parametrize(
    "query",
    [
        "What are pointer networks good for?",  # "what are" is not a request for papers
        "Which PhD thesis proposes binary paragraph vectors?",  # "thesis" describes the document
        "Does differentiable search index retrieval scale to MS MARCO?",
        "retrieval augmented generation",
        "Canonical correlation analysis",  # 'can' only as a whole word at the start
        "Howard's method",
    ],
)
def test_content_words_are_kept(query: str) -> None:
    assert clean_question(query) == query


@pytest.mark.parametrize("query", ["paper", "Which papers?", "Is there a paper", "papers papers"])
def test_a_question_that_would_be_left_empty_stays_as_it_was(query: str) -> None:
    assert clean_question(query) == query
