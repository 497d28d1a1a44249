"""The model: its types and contracts (`types`), the Hugging Face runtime and its step decoder."""
