"""Common arXiv categories, for `/digest subscribe arxiv:` autocomplete (any valid category is accepted;
this list only helps typing). Names from arXiv's category taxonomy."""

from __future__ import annotations

ARXIV_CATEGORIES: dict[str, str] = {
    "cs.AI": "Artificial Intelligence",
    "cs.AR": "Hardware Architecture",
    "cs.CC": "Computational Complexity",
    "cs.CE": "Computational Engineering, Finance, and Science",
    "cs.CG": "Computational Geometry",
    "cs.CL": "Computation and Language",
    "cs.CR": "Cryptography and Security",
    "cs.CV": "Computer Vision and Pattern Recognition",
    "cs.CY": "Computers and Society",
    "cs.DB": "Databases",
    "cs.DC": "Distributed, Parallel, and Cluster Computing",
    "cs.DL": "Digital Libraries",
    "cs.DM": "Discrete Mathematics",
    "cs.DS": "Data Structures and Algorithms",
    "cs.ET": "Emerging Technologies",
    "cs.FL": "Formal Languages and Automata Theory",
    "cs.GR": "Graphics",
    "cs.GT": "Computer Science and Game Theory",
    "cs.HC": "Human-Computer Interaction",
    "cs.IR": "Information Retrieval",
    "cs.IT": "Information Theory",
    "cs.LG": "Machine Learning",
    "cs.LO": "Logic in Computer Science",
    "cs.MA": "Multiagent Systems",
    "cs.MM": "Multimedia",
    "cs.NE": "Neural and Evolutionary Computing",
    "cs.NI": "Networking and Internet Architecture",
    "cs.PF": "Performance",
    "cs.PL": "Programming Languages",
    "cs.RO": "Robotics",
    "cs.SD": "Sound",
    "cs.SE": "Software Engineering",
    "cs.SI": "Social and Information Networks",
    "cs.SY": "Systems and Control",
    "stat.ML": "Machine Learning (Statistics)",
    "stat.ME": "Methodology",
    "stat.TH": "Statistics Theory",
    "stat.AP": "Applications",
    "stat.CO": "Computation",
    "eess.AS": "Audio and Speech Processing",
    "eess.IV": "Image and Video Processing",
    "eess.SP": "Signal Processing",
    "eess.SY": "Systems and Control",
    "math.OC": "Optimization and Control",
    "math.ST": "Statistics Theory",
    "math.PR": "Probability",
    "math.NA": "Numerical Analysis",
    "math.CO": "Combinatorics",
    "math.AG": "Algebraic Geometry",
    "math.NT": "Number Theory",
    "physics.comp-ph": "Computational Physics",
    "physics.data-an": "Data Analysis, Statistics and Probability",
    "cond-mat.stat-mech": "Statistical Mechanics",
    "cond-mat.mtrl-sci": "Materials Science",
    "quant-ph": "Quantum Physics",
    "hep-th": "High Energy Physics - Theory",
    "hep-ph": "High Energy Physics - Phenomenology",
    "gr-qc": "General Relativity and Quantum Cosmology",
    "astro-ph.CO": "Cosmology and Nongalactic Astrophysics",
    "astro-ph.GA": "Astrophysics of Galaxies",
    "q-bio.NC": "Neurons and Cognition",
    "q-bio.QM": "Quantitative Methods",
    "q-fin.CP": "Computational Finance",
    "q-fin.ST": "Statistical Finance",
    "econ.EM": "Econometrics",
}

CHOICE_MAX_CHARS = 100  # Discord's limit for an autocomplete choice's name and value


def category_suggestions(current: str, limit: int = 25) -> list[tuple[str, str]]:
    """(label, value) pairs completing the last comma-separated category of `current`.

    The value keeps the categories already typed (`cs.CL, cs.I` → `cs.CL, cs.IR`), because the option
    is one comma-separated string. Matches the code's prefix first, then any code or name containing
    the text; categories already chosen are not offered again."""
    *chosen, last = [part.strip() for part in current.split(",")]
    chosen = [c for c in chosen if c]
    needle = last.lower()
    taken = {c.lower() for c in chosen}
    candidates = [code for code in ARXIV_CATEGORIES if code.lower() not in taken]
    prefix = [c for c in candidates if c.lower().startswith(needle)]
    contains = [
        c
        for c in candidates
        if c not in prefix and (needle in c.lower() or needle in ARXIV_CATEGORIES[c].lower())
    ]
    suggestions: list[tuple[str, str]] = []
    for code in [*prefix, *contains]:
        value = ", ".join([*chosen, code])
        if len(value) > CHOICE_MAX_CHARS:
            continue
        label = f"{code} — {ARXIV_CATEGORIES[code]}"
        if chosen:
            label = f"{', '.join(chosen)}, {label}"
        if len(label) > CHOICE_MAX_CHARS:
            label = value
        suggestions.append((label, value))
        if len(suggestions) == limit:
            break
    return suggestions
