"""mixsearch.laws."""
