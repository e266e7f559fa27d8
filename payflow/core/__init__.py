"""The pure core: requests, policies and flows. No I/O, no clocks, no global randomness."""
