"""mixsearch.proxy."""
