"""The chaos run (issue 7): the whole pipeline under crashes, outages and carrier faults."""
