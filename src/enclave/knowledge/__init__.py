"""Knowledge bases: document text, chunking, keyword segmentation, hybrid retrieval."""
