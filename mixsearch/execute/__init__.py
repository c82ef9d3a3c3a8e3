"""mixsearch.execute."""
