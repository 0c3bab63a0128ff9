"""Papers' full texts: one document model, a parser per format (PDF, LaTeX source, arXiv HTML),
on-demand arXiv fetching, and passages by section into the paper index."""
