"""Generation: planning which synthetic conversations to ask for, with systematic coverage of a parameter space."""
