"""`gimlet`: the command line CI pipelines and people use to talk to GimletD over HTTP.

It shares nothing with the server but the HTTP contract, except `gimlet manifest
template`, which renders an environment config locally with the server's own
core (`gimletd`), so what it prints is what a release would commit.
"""
