"""SimPy models of slow-provider days."""
