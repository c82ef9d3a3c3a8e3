"""mixsearch.propose."""
