"""Finding passages: tokens and chunking, dense and sparse embeddings, the Qdrant index, hybrid search."""
