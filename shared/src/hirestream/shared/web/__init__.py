"""HTTP mechanisms every service's API uses: auth, problem details, health, metrics."""
