"""The whole CDN on one machine: `vcdn up`, and the cluster runner tests and benchmarks share.

Not a component: it starts the components as child processes (control, origin, steering,
appliances), packages and plays a title through them, and reports what served it. It
imports the shared core (vcdn/) and nothing imports it but the `vcdn up` subcommand,
tests and benchmarks.
"""
