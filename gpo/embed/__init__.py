"""Base-LLM embeddings of GPO prompts: prompts, model loading, extraction and the on-disk cache."""
