"""The lab's network simulators: the simulated world served over the wire to the real clients."""
