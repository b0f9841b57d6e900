"""Content-addressed storage under the hub dir: trees, artifacts, results. Stores; never fetches."""
