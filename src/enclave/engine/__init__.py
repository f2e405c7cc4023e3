"""The embedded engine: model files, the llama.cpp child process, embedder and OCR."""
