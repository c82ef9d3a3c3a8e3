"""mixsearch.bench."""
