"""What a run shows of its chaos: each test's timeline, the terminal summary, the JSON report."""
